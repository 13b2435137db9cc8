"""What every exporter reads from a run directory: model, tokenizers, config, checked."""

import os

from .errors import ExportError
from keras_transformer.run_directory import RunDirectory, RunDirectoryError
from keras_transformer.tasks import TASKS


class Run:
    """A trained run, loaded and checked for export (`RunDirectory.load`).

    Raises `ExportError` naming the problem when a file is missing or corrupt,
    when the tokenizers or labels do not fit the model (a mismatched
    directory), or when the run's family is not exported.

    Args:
        path: `runs/<name>`, as written by `train.py`.

    Attributes:
        path, config, model, source_tokenizer, target_tokenizer, family,
        labels (classify, tag), max_length (the model's
        `max_sequence_length`), default_out (`<path>/export`),
        gptq_kernels (the GPTQ-rounded kernels computed for this run, by
        calibration sentences; see `export.tflite.rounded_kernels`).
    """

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isdir(self.path):
            raise ExportError(f"{self.path} is not a directory: expected a run directory written by train.py.")
        self.directory = RunDirectory(self.path)
        try:
            loaded = self.directory.load()
        except (RunDirectoryError, OSError) as error:
            raise ExportError(str(error)) from None
        self.config, self.model = loaded.config, loaded.model
        self.source_tokenizer, self.target_tokenizer = loaded.source_tokenizer, loaded.target_tokenizer
        self.family, self.labels, self.max_length = loaded.family, loaded.labels, loaded.max_sequence_length
        self.gptq_kernels = {}
        task = TASKS.get(self.family)
        if task is None or not task.exported:
            raise ExportError(f"{self.path}: a {self.family} run has no export (fine-tune it first).")
        if not isinstance(self.model, task.model_class):
            raise ExportError(
                f"{self.path}: a {self.family} run should hold a {task.model_class.__name__}, "
                f"not {type(self.model).__name__}."
            )

    @property
    def default_out(self):
        return self.directory.export_dir

    def saved_calibration(self):
        """The run's `calibration.txt` sentences, or `None` (runs trained before it was written)."""
        try:
            return self.directory.read_calibration()
        except RunDirectoryError as error:  # not UTF-8 text
            raise ExportError(str(error)) from None

    def calibration_sentences(self):
        """The source sentences training saved for int8 calibration."""
        sentences = self.saved_calibration()
        if not sentences:
            raise ExportError(
                f"{self.path} has no {self.directory.calibration_file} (imported runs, and runs trained before it "
                "was written); "
                "pass --data FILE with source sentences to calibrate on."
            )
        return sentences


def read_source_lines(path):
    """Non-blank sentences of a plain or gzip file (calibration or check data)."""
    from keras_transformer.data.readers import read_lines

    try:
        lines = [line for line in read_lines(path) if line.strip()]
    except (OSError, ValueError) as error:
        raise ExportError(str(error)) from None
    if not lines:
        raise ExportError(f"{path}: no sentence in it.")
    return lines
