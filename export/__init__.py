"""Export trained runs: SavedModel for serving, TFLite (LiteRT) for devices.

    python -m export --model runs/<name> --format saved_model|tflite|... [--out DIR]

The house, bottom up (no module imports one above it):

    errors.py              ExportError
    run.py                 Run: a run directory loaded and checked for export
    base.py                Exporter, ExportOptions, the (family, format) registry, export_run
    module.py              ExportModule: frozen weights and length checks for tf.Module graphs
    translation_module.py  a Transformer's signatures (generate, beam_search, encode, decode_step, ...)
    family_module.py       classifier / tagger / language-model signatures
    converter.py           TFLite conversion and int8 calibration
    gptq.py                int8 weights rounded against calibration activations (dynamic int8)
    flatbuffer.py          flatbuffer passes (shared quantization parameters, op lists)
    interpreter.py         the LiteRT interpreter
    saved_model.py, tflite.py, tflite_text.py    the registered exporters
    verify.py (backends.py, verify_families.py), run_tflite.py, __main__.py    command lines

Each exporter writes to a temporary path that `export_run` renames into
place, so a failed export leaves nothing behind and never clobbers a
previous artifact.
"""

from keras_transformer import quiet

with quiet.native_stderr_filtered():  # TensorFlow's C++ start-up lines held back (keras_transformer/quiet.py)
    import tensorflow  # noqa: F401

from .base import EXPORTERS, Exporter, ExportOptions, all_formats, export_run, formats_for, register  # noqa: F401
from .errors import ExportError  # noqa: F401
from .run import Run  # noqa: F401

# Importing the exporter modules registers them (in this order: "all" exports in it).
from . import marian, saved_model, tflite, tflite_text  # noqa: F401, E402
