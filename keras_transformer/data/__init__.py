"""Data for training: the built-in synthetic tasks here (backend-neutral);
tokenizers (`data.tokenizers`), readers (`data.readers`) and tf.data
pipelines (`data.pipeline`, `data.families`) over real text are TensorFlow modules, imported
on their own."""

from keras_transformer.data.synthetic import SyntheticTranslationTask, teacher_forcing
from keras_transformer.data.synthetic_language import SyntheticLanguage
