"""Export trained runs: SavedModel for serving, TFLite (LiteRT) for devices.

    python -m export --model runs/<name> --format saved_model|tflite|... [--out DIR]

Each format is an exporter registered by name (`FORMATS`); each writes to a
temporary path and renames it into place, so a failed export leaves nothing
behind and never clobbers a previous artifact.
"""

from export.registry import FORMATS, export_run, register  # noqa: F401
from export.run import ExportError, Run  # noqa: F401

# Importing the format modules registers them.
from export import families, saved_model, tflite, tflite_text  # noqa: F401, E402
