"""Pretrained checkpoints from elsewhere, read into run directories.

`import_marian` reads a Hugging Face Marian (OPUS-MT) translation checkpoint;
the command is `kt-import` (`python -m keras_transformer.pretrained` in a
checkout).
"""

from keras_transformer.pretrained.marian import CheckpointError, import_marian

__all__ = ["CheckpointError", "import_marian"]
