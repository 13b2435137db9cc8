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
        self.family = self.config.get("task", {}).get("family", "translate")
        if self.family != "translate":
            self._check_family()
            return
        sizes = (self.model.source_vocabulary_size, self.model.target_vocabulary_size)
        tokenizer_sizes = (self.source_tokenizer.vocabulary_size, self.target_tokenizer.vocabulary_size)
        if sizes != tokenizer_sizes:
            raise ExportError(
                f"{path}: the tokenizers do not match the model (vocabularies {tokenizer_sizes[0]} / "
                f"{tokenizer_sizes[1]}, the model's {sizes[0]} / {sizes[1]}): a mismatched run directory."
            )
        self._check_length()

    def _check_length(self):
        if self.config.get("model", {}).get("max_sequence_length") != self.model.max_sequence_length:
            raise ExportError(f"{self.path}: {CONFIG_FILE} does not describe {MODEL_FILE} (max_sequence_length differs).")

    def _check_family(self):
        """A classifier, tagger or language model, and a tokenizer that fits it."""
        from export.families import EXPORTED_FAMILIES

        expected = EXPORTED_FAMILIES.get(self.family)
        if expected is None:
            raise ExportError(f"{self.path}: a {self.family} run has no export (fine-tune it first).")
        if type(self.model).__name__ != expected:
            raise ExportError(f"{self.path}: a {self.family} run should hold a {expected}, not {type(self.model).__name__}.")
        body = getattr(self.model, "backbone", self.model)
        # A pre-trained encoder's vocabulary has one more id than its tokenizer: the mask token.
        size = self.source_tokenizer.vocabulary_size
        if body.vocabulary_size not in (size, size + 1):
            raise ExportError(
                f"{self.path}: the tokenizer ({size} ids) does not match the model ({body.vocabulary_size}): "
                "a mismatched run directory."
            )
        self.labels = self.config.get("task", {}).get("labels")
        if self.family in ("classify", "tag"):
            expected_count = self.model.num_classes if self.family == "classify" else self.model.num_tags
            if not self.labels or len(self.labels) != expected_count:
                raise ExportError(f"{self.path}: {CONFIG_FILE} does not list the model's {expected_count} labels.")
        if _find(self.config.get("model", {}), "max_sequence_length") != body.max_sequence_length:
            raise ExportError(f"{self.path}: {CONFIG_FILE} does not describe {MODEL_FILE} (max_sequence_length differs).")

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


def _find(config, key):
    """The first value of `key` in nested dicts (a task model's config holds its backbone's)."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


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
