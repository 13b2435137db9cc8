"""What every exporter reads from a run directory, checked, and atomic outputs."""

import contextlib
import os
import shutil
import tempfile

from keras_transformer.data.tokenizers import METADATA_FILE, load_tokenizers
from keras_transformer.run_directory import CONFIG_FILE, MODEL_FILE, RunDirectory
from keras_transformer.translator import TOKENIZER_DIR

EXPORT_DIR = "export"


class ExportError(ValueError):
    """A run directory that cannot be exported (missing or mismatched files)."""


class Run:
    """A trained run, loaded for export: model, tokenizers, config.

    Raises `ExportError` naming the problem when a file is missing or corrupt,
    or when the tokenizers do not fit the model (a mismatched directory).

    Args:
        path: `runs/<name>`, as written by `train.py`.
    """

    def __init__(self, path):
        self.path = path
        if not os.path.isdir(path):
            raise ExportError(f"{path} is not a directory: expected a run directory written by train.py.")
        run = RunDirectory(path)
        for name in (CONFIG_FILE, MODEL_FILE, os.path.join(TOKENIZER_DIR, METADATA_FILE)):
            if not os.path.exists(run.file(name)):
                raise ExportError(f"{path} is incomplete: {name} is missing (was training interrupted?).")
        try:
            self.config = run.read_json(CONFIG_FILE)
            self.model = run.load_model(MODEL_FILE, compile=False)
            self.source_tokenizer, self.target_tokenizer = load_tokenizers(run.file(TOKENIZER_DIR))
        except (OSError, ValueError) as error:
            raise ExportError(f"{path}: {error}") from None
        sizes = (self.model.source_vocabulary_size, self.model.target_vocabulary_size)
        tokenizer_sizes = (self.source_tokenizer.vocabulary_size, self.target_tokenizer.vocabulary_size)
        if sizes != tokenizer_sizes:
            raise ExportError(
                f"{path}: the tokenizers do not match the model (vocabularies {tokenizer_sizes[0]} / "
                f"{tokenizer_sizes[1]}, the model's {sizes[0]} / {sizes[1]}): a mismatched run directory."
            )
        if self.config.get("model", {}).get("max_sequence_length") != self.model.max_sequence_length:
            raise ExportError(f"{path}: {CONFIG_FILE} does not describe {MODEL_FILE} (max_sequence_length differs).")

    @property
    def default_out(self):
        return os.path.join(self.path, EXPORT_DIR)

    def source_sentences(self, limit=200):
        """Up to `limit` training source sentences (for int8 calibration and checks)."""
        task = self.config.get("task", {})
        if task.get("name") == "synthetic":
            from keras_transformer.data.synthetic import SyntheticTranslationTask

            synthetic = SyntheticTranslationTask()
            if synthetic.config()["source_vocabulary"] != task.get("source_vocabulary"):
                raise ExportError(f"{self.path}: the synthetic task differs from the one this run was trained on.")
            sources, _ = synthetic.sample(limit, seed=self.config["training"].get("seed", 0) + 1)
            return [synthetic.source_text(ids) for ids in sources]
        from keras_transformer.data.readers import read_parallel

        train_src, train_tgt, train_tsv = task.get("train", [None, None, None])
        try:
            sources, _, _ = read_parallel(train_src, train_tgt, train_tsv)
        except (OSError, ValueError) as error:
            raise ExportError(
                f"{self.path}: cannot read the training data for calibration ({error}); pass --data FILE."
            ) from None
        return sources[:limit]


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path`; on success rename it to `path`.

    On failure the temporary file or directory is removed and whatever was at
    `path` before is left untouched.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    target = os.path.join(tmp, os.path.basename(path))
    try:
        yield target
        if os.path.isdir(path) and not os.path.islink(path):
            old = path + ".old"
            os.replace(path, old)
            os.replace(target, path)
            shutil.rmtree(old)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_source_lines(path):
    """Non-blank sentences of a plain or gzip file (calibration or check data)."""
    from keras_transformer.data.readers import read_lines

    try:
        lines = [line for line in read_lines(path) if line.strip()]
    except ValueError as error:
        raise ExportError(str(error)) from None
    if not lines:
        raise ExportError(f"{path}: no sentence in it.")
    return lines
