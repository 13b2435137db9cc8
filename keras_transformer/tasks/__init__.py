"""Training tasks: one module per task behind one interface (`Task`), built from typed options.

    from keras_transformer.tasks import TASKS, ClassifyOptions
    task = TASKS["classify"](ClassifyOptions(epochs=5))

`trainer.train(task, run, ...)` fits and evaluates a task into a run
directory; `train.py` is the command line over it.
"""

from keras_transformer.tasks.base import Task, TaskOptions
from keras_transformer.tasks.classify import ClassifyOptions, ClassifyTask
from keras_transformer.tasks.encoder import EncoderOptions, pretrained_encoder
from keras_transformer.tasks.lm import LanguageModelTask, PlainTextOptions
from keras_transformer.tasks.pretrain_mlm import PretrainMaskedLMTask
from keras_transformer.tasks.tag import TagOptions, TagTask
from keras_transformer.tasks.translate import TranslateOptions, TranslateTask

TASKS = {task.name: task for task in (TranslateTask, ClassifyTask, TagTask, LanguageModelTask, PretrainMaskedLMTask)}
