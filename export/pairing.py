"""Which run an exported file came from: a record written into each artifact, checked where a run is paired with one.

`kt-run-tflite --model RUN --tflite FILE` tokenizes with RUN's tokenizers and
`export.verify --model RUN --export-dir DIR` compares RUN's model with DIR's
files: a file exported from another run reads other ids (an id past the
vocabulary, or the wrong words). Every exporter records its run:

    {"format": 1, "family": "translate", "model_sha256": "...",
     "tokenizers": {"source": {"kind": "wordpiece", "size": 8000, "sha256": "..."}, "target": {...}}}

in a `.tflite` file as flatbuffer metadata named `keras_transformer` (beside
the converter's own entries; apps and interpreters ignore it), in a
SavedModel as `assets.extra/keras_transformer.json` (TensorFlow Serving's
folder for files beside the model). `check` refuses a file whose tokenizers
are not the run's; a file exported from the same tokenizers but another
`model.keras` (retrained since) is reported, not refused.
"""

import hashlib
import json
import os

from .errors import ExportError

METADATA_NAME = "keras_transformer"
SAVED_MODEL_FILE = os.path.join("assets.extra", "keras_transformer.json")
FORMAT = 1


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tokenizer_record(tokenizer):
    if tokenizer is None:
        return None
    return {"kind": tokenizer.kind, "size": int(tokenizer.vocabulary_size), "sha256": tokenizer.fingerprint()}


def fingerprints(source_tokenizer, target_tokenizer, model_file=None):
    """The parts of a record that pair a run with a file: its tokenizers, and its model when `model_file` is given."""
    tokenizers = {"source": _tokenizer_record(source_tokenizer), "target": _tokenizer_record(target_tokenizer)}
    found = {"tokenizers": tokenizers}
    if model_file:
        found["model_sha256"] = _sha256_file(model_file)
    return found


def record(run):
    """What an artifact of `run` (an `export.Run`) says about where it came from."""
    model_file = run.directory.file(run.directory.model_file)
    found = fingerprints(run.source_tokenizer, run.target_tokenizer, model_file)
    return {"format": FORMAT, "family": run.family, **found}


def encoded(run):
    """`record(run)` as the bytes written into a file."""
    return json.dumps(record(run), sort_keys=True).encode("utf-8")


def write_saved_model_record(run, path):
    """Write `record(run)` into the SavedModel directory `path`."""
    os.makedirs(os.path.join(path, os.path.dirname(SAVED_MODEL_FILE)), exist_ok=True)
    with open(os.path.join(path, SAVED_MODEL_FILE), "wb") as f:
        f.write(encoded(run))


def read_record(path):
    """The record of the artifact at `path` (a `.tflite` file or a SavedModel directory), or `None` (older exports)."""
    try:
        if os.path.isdir(path):
            file = os.path.join(path, SAVED_MODEL_FILE)
            if not os.path.isfile(file):
                return None
            with open(file, "rb") as f:
                data = f.read()
        else:
            data = tflite_metadata(path).get(METADATA_NAME)
            if data is None:
                return None
        found = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: its record of the run it came from is unreadable ({error}).") from None
    if not isinstance(found, dict) or not isinstance(found.get("tokenizers"), dict):
        raise ExportError(f"{path}: its record of the run it came from is not one this version writes.")
    return found


def tflite_metadata(path):
    """`{name: bytes}` of a `.tflite` file's metadata entries, read without unpacking the model."""
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        flatbuffer = bytearray(f.read())
    try:
        model = schema.Model.GetRootAs(flatbuffer, 0)
        entries = {}
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # a large model's data lies after the flatbuffer
                data = bytes(flatbuffer[buffer.Offset() : buffer.Offset() + buffer.Size()])
            else:
                data = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            entries[(entry.Name() or b"").decode("utf-8", "replace")] = data
        return entries
    except Exception as error:  # a flatbuffer that does not parse: the interpreter says more
        raise ExportError(f"{path} is not a readable TFLite model (truncated or corrupt?): {error}") from None


def _describe(tokenizer):
    return f"{tokenizer['kind']}, {tokenizer['size']} pieces, {tokenizer['sha256'][:12]}"


def check(run_path, expected, artifact, warn=None):
    """Refuse `artifact` if it was exported from a run whose tokenizers are not the expected ones.

    Args:
        run_path: the run, for messages.
        expected: the run's `fingerprints`; when they include the model's and
            `warn` is given, an artifact of the same tokenizers but another
            model is reported.
        artifact: a `.tflite` file or a SavedModel version directory.
        warn: called with one line for that report.

    Returns:
        The artifact's record, or `None` for files exported before records
        were written (nothing to check).

    Raises:
        ExportError: one line naming both vocabularies.
    """
    found = read_record(artifact)
    if found is None:
        return None
    for side in ("source", "target"):
        theirs, ours = found["tokenizers"].get(side), expected["tokenizers"][side]
        if theirs is None or ours is None:
            continue
        if (theirs.get("kind"), theirs.get("size"), theirs.get("sha256")) != (ours["kind"], ours["size"], ours["sha256"]):
            raise ExportError(
                f"{artifact} was exported from a run with another {side} vocabulary ({_describe(theirs)}) than "
                f"{run_path}'s ({_describe(ours)}): pass the run it was exported from (--model), or export this one."
            )
    model = expected.get("model_sha256")
    if model and warn and found.get("model_sha256") not in (None, model):
        warn(
            f"note: {artifact} was exported from another model.keras than {run_path}'s (trained further since?); "
            "export again to compare the current one."
        )
    return found
