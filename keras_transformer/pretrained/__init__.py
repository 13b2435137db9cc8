"""Pretrained checkpoints from elsewhere, read into run directories.

`import_marian` reads a Hugging Face Marian (OPUS-MT) translation checkpoint
into a translation run; `import_bert` a BERT checkpoint into a masked-LM run
whose encoder fine-tunes as a classifier or tagger; `import_gpt2` a GPT-2
checkpoint into a language-model run; `import_checkpoint` picks
by the checkpoint's `model_type`. The command is `kt-import`
(`python -m keras_transformer.pretrained` in a checkout).
"""

from keras_transformer.pretrained.bert import import_bert
from keras_transformer.pretrained.gpt2 import import_gpt2
from keras_transformer.pretrained.marian import CheckpointError, import_marian, read_model_type

IMPORTERS = {"marian": import_marian, "bert": import_bert, "gpt2": import_gpt2}


def import_checkpoint(checkpoint, out, name, max_sequence_length=None):
    """Import a Hugging Face checkpoint directory by its `config.json`'s `model_type` (see `IMPORTERS`)."""
    model_type = read_model_type(checkpoint)
    if model_type not in IMPORTERS:
        raise CheckpointError(f"{checkpoint} holds a {model_type!r} model; supported: {sorted(IMPORTERS)} "
                              "(config.json's model_type)")  # fmt: skip
    return IMPORTERS[model_type](checkpoint, out, name, max_sequence_length=max_sequence_length)


__all__ = [
    "CheckpointError", "IMPORTERS", "import_bert", "import_checkpoint", "import_gpt2", "import_marian",
    "read_model_type",
]
