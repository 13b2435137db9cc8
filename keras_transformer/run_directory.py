"""A training run's directory: model, config, history; written atomically.

Layout of `runs/<name>/`:
    config.json      model config, training arguments, task description
    model.keras      the trained model (best epoch by validation BLEU or loss)
    history.csv      per-epoch metrics, appended as each epoch ends
    tokenizers/      (text runs) the source and target tokenizers
    hypotheses.txt   (text runs) the best model's validation translations
    evaluation.json  final evaluation
    checkpoints/     per-epoch state for `--resume` (Keras BackupAndRestore)
    epoch_weights/   (`--average-last N`) the last N epochs' weights, averaged at the end

Every file is written to a temporary name in the same directory and renamed
into place, so an interrupted write never leaves a half-written file where a
good one was.
"""

import json
import os
import tempfile

import keras

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")

    _atomic_write(path, write)


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic_write(path, write)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: not a run directory, or an incomplete one.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is corrupt (not valid JSON: {error}).") from None


def save_model(path, model):
    _atomic_write(path, model.save)


class RunDirectory:
    """The directory of one run.

    Args:
        path: `runs/<name>`.
        create: make the directory; refuses one that already holds a run
            unless `exist_ok` (resuming).
    """

    def __init__(self, path, create=False, exist_ok=False):
        self.path = path
        if create:
            if os.path.exists(os.path.join(path, CONFIG_FILE)) and not exist_ok:
                raise FileExistsError(
                    f"{path} already holds a run; pass --resume to continue it or choose another --name."
                )
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            raise FileNotFoundError(f"Run directory {path} does not exist.")

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def checkpoint_dir(self):
        return self.file("checkpoints")

    def write_json(self, name, data):
        write_json(self.file(name), data)

    def read_json(self, name):
        return read_json(self.file(name))

    def save_model(self, model, name=MODEL_FILE):
        save_model(self.file(name), model)

    def load_model(self, name=MODEL_FILE, compile=True):
        import keras_transformer  # noqa: F401  (registers the classes)

        path = self.file(name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: the run has no saved model.")
        try:
            return keras.saving.load_model(path, compile=compile)
        except Exception as error:
            raise ValueError(f"{path} could not be loaded as a keras-transformer model: {error}") from error
