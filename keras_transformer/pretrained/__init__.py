"""Pretrained checkpoints from elsewhere, read into run directories.

`import_marian` reads a Hugging Face Marian (OPUS-MT) translation checkpoint
into a translation run; `import_bert` a BERT checkpoint into a masked-LM,
classifier or tagger run; `import_gpt2` a GPT-2
checkpoint into a language-model run; `import_checkpoint` picks
by the checkpoint's `model_type`. The command is `kt-import`
(`python -m keras_transformer.pretrained` in a checkout).
"""

from keras_transformer.pretrained.bert import import_bert
from keras_transformer.pretrained.gpt2 import import_gpt2
from keras_transformer.pretrained.marian import CheckpointError, import_marian, read_model_type

IMPORTERS = {"marian": import_marian, "bert": import_bert, "gpt2": import_gpt2}


# The run tasks each importer writes (the first: what it writes by default, unless the checkpoint says otherwise).
TASKS = {"marian": ("translate",), "bert": ("pretrain-mlm", "classify", "tag"), "gpt2": ("lm",)}


def import_checkpoint(checkpoint, out, name, max_sequence_length=None, task=None, labels=None):
    """Import a Hugging Face checkpoint directory by its `config.json`'s `model_type` (see `IMPORTERS`).

    `task` and `labels`: the run's task, one of `TASKS[model_type]`, and its
    class or tag names (BERT: see `import_bert`).
    """
    model_type = read_model_type(checkpoint)
    if model_type not in IMPORTERS:
        raise CheckpointError(f"{checkpoint} holds a {model_type!r} model; supported: {sorted(IMPORTERS)} "
                              "(config.json's model_type)")  # fmt: skip
    if task is not None and task not in TASKS[model_type]:
        choices = ", ".join(TASKS[model_type][:-1]) + " or " * (len(TASKS[model_type]) > 1) + TASKS[model_type][-1]
        raise ValueError(f"a {model_type} checkpoint imports as a {choices} run. "
                         f"Received: task={task!r}")  # fmt: skip
    if model_type == "bert":
        return import_bert(checkpoint, out, name, max_sequence_length=max_sequence_length, task=task, labels=labels)
    if labels is not None:
        raise ValueError(f"labels name a classifier's classes or a tagger's tags; a {model_type} run has none")
    return IMPORTERS[model_type](checkpoint, out, name, max_sequence_length=max_sequence_length)


__all__ = [
    "CheckpointError", "IMPORTERS", "TASKS", "import_bert", "import_checkpoint", "import_gpt2", "import_marian",
    "read_model_type",
]
