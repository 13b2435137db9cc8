"""One registry of exporters keyed by (model family, format), their base class and options.

An exporter is a class: `format` (its name, e.g. `"tflite_float16"`),
`filename` (what it writes under the export directory), `families` (the
model families it exports: `"translate"`, `"classify"`, `"tag"`, `"lm"`),
`default` (whether `train.py` writes it unless told otherwise), and
`export(run, path)`, which writes the artifact at `path` (a temporary path,
renamed into place by `export_run`). Options every exporter may read are
one typed `ExportOptions`; an unknown option is an error, never dropped.
"""

import dataclasses
import os
import time

from .errors import ExportDiskFullError, ExportError
from .run import Run
from keras_transformer import commands
from keras_transformer.checks import check_finite
from keras_transformer.decoding.beam import LENGTH_PENALTY_FORMS
from keras_transformer.options import from_kwargs
from keras_transformer.run_directory import (
    RunLock, RunLockedError, atomic_path, check_writable, disk_full_message, is_disk_full, remove_temporaries,
)  # fmt: skip

LOCK_FILE = ".kt-lock"  # in an export directory while a process writes it

EXPORTERS = {}  # (family, format) -> Exporter subclass, in registration order
INT8_ROUNDINGS = ("nearest", "gptq")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """Settings of the exported functions.

    Attributes:
        beam_size, length_penalty: the `beam_search` / `translate_beam`
            signatures' beam search (the paper: 4 and 0.6).
        length_penalty_form: `"gnmt"` or `"length"` (transformers' form;
            see `keras_transformer.decoding.length_penalty`).
        calibration_sentences: source sentences for `tflite_int8` and for
            GPTQ rounding (default: the run's `calibration.txt`).
        int8_rounding: how the dynamic-int8 TFLite files of translation
            runs round their weight matrices: `"nearest"` (the converter's
            own) or `"gptq"` (against the calibration sentences'
            activations, see `export.gptq`; to nearest, with a warning,
            when the run has no calibration sentences).
        version: the SavedModel's version directory
            (`saved_model/<version>/`, as TensorFlow Serving expects).
    """

    beam_size: int = 4
    length_penalty: float = 0.6
    length_penalty_form: str = "gnmt"
    calibration_sentences: tuple = None
    int8_rounding: str = "nearest"
    version: int = 1

    def __post_init__(self):
        if not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ExportError(f"--beam-size must be a positive integer. Received: {self.beam_size}")
        try:
            check_finite(self.length_penalty, "length_penalty")
        except ValueError:
            raise ExportError(f"--length-penalty must be a finite number. Received: {self.length_penalty!r}") from None
        if self.length_penalty_form not in LENGTH_PENALTY_FORMS:
            raise ExportError(
                f"--length-penalty-form must be one of {LENGTH_PENALTY_FORMS}. Received: {self.length_penalty_form!r}"
            )
        if self.int8_rounding not in INT8_ROUNDINGS:
            raise ExportError(f"--int8-rounding must be one of {INT8_ROUNDINGS}. Received: {self.int8_rounding!r}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ExportError(f"--version must be a positive integer. Received: {self.version}")

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Options from `export_run`'s keyword arguments; unknown names are an `ExportError`."""
        return from_kwargs(cls, kwargs, "export option(s)", ExportError)


class Exporter:
    """Writes one artifact of a trained run.

    Args:
        options: an `ExportOptions`.
    """

    format = None
    filename = None
    families = ()
    default = True
    in_all = True  # "all" selects it (a format only some runs of the family can take is asked for by name)
    writes_directory = False  # the artifact is a directory (SavedModel), not a file
    marker = "saved_model.pb"  # the file that shows a directory artifact is an earlier one of this kind

    def __init__(self, options=None):
        self.options = options or ExportOptions()

    def export(self, run, path):
        """Write the artifact of `run` (an `export.Run`) at `path`."""
        raise NotImplementedError

    def target(self, out):
        """Where the artifact goes under the export directory `out`."""
        return os.path.join(out, self.filename)


def register(cls):
    """Class decorator: register `cls` for each of its `families` under its `format`."""
    if not cls.format or not cls.filename or not cls.families:
        raise ValueError(f"{cls.__name__} needs a format, a filename and families to be registered.")
    for family in cls.families:
        EXPORTERS[(family, cls.format)] = cls
    return cls


def all_formats():
    """Every registered format name, in registration order."""
    return list(dict.fromkeys(name for _, name in EXPORTERS))


def formats_for(family, selection="all", what="formats"):
    """The formats named by `selection` for runs of `family`, checked.

    Args:
        family: the run's model family.
        selection: `"all"`, `"default"`, a comma-separated string or a list
            of format names (which may hold `"all"` or `"default"`).
        what: how the caller calls the selection, for messages.

    Raises:
        ExportError: a name unknown for the family, or none left.
    """
    known = [name for fam, name in EXPORTERS if fam == family]
    if not known:
        raise ExportError(f"A {family} run has no export (fine-tune it first).")
    names = selection.split(",") if isinstance(selection, str) else list(selection)
    names = [name.strip() for name in names if name.strip()]
    chosen = []
    for name in names:
        if name == "all":
            chosen += [fmt for fmt in known if EXPORTERS[(family, fmt)].in_all]
        elif name == "default":
            chosen += [fmt for fmt in known if EXPORTERS[(family, fmt)].default]
        else:
            chosen.append(name)
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise ExportError(
            f"{what}: unknown format(s) {unknown} for {family} runs. Expected default, all or some of {sorted(known)}."
        )
    return list(dict.fromkeys(chosen))


def export_run(model_dir, formats=("saved_model",), out=None, run=None, log=print, **options):
    """Export the run at `model_dir` in each of `formats`.

    Args:
        model_dir: `runs/<name>`.
        formats: format names (see `formats_for`).
        out: the directory to write into (default `runs/<name>/export/`).
        run: an already loaded `export.Run` of `model_dir`, to skip reloading.
        log: where progress lines go (`None`: nowhere).
        **options: the fields of `ExportOptions`.

    Returns:
        `{format: path}` of what was written. Each artifact is written to a
        temporary path and renamed: a failed export leaves nothing behind and
        never clobbers an earlier artifact.
    """
    options = ExportOptions.from_kwargs(**options)
    run = run or Run(model_dir)
    known = [name for fam, name in EXPORTERS if fam == run.family]
    unknown = [name for name in formats if name not in known]
    if unknown:
        raise ExportError(f"{run.family} runs have no {unknown} export. Expected some of {sorted(known)}.")
    out = out or run.default_out
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"{out} is a file, not a directory to export into.")
    exporters = [EXPORTERS[(run.family, name)](options) for name in formats]
    for exporter in exporters:  # never delete what export did not write
        _check_replaceable(exporter.target(out), exporter)
    made_out = not os.path.isdir(out)
    try:
        check_writable(out, "cannot export into {directory} (--out)")
        lock = RunLock(out, os.path.join(out, LOCK_FILE), alternative="export elsewhere (--out)").acquire()
    except (RunLockedError, OSError) as error:  # another process exports there
        raise ExportError(str(error)) from None
    try:
        return _export_all(run, exporters, out, log)
    finally:
        lock.release()
        if made_out and not os.listdir(out):  # nothing written: no empty folder left behind
            os.rmdir(out)


def _export_all(run, exporters, out, log):
    remove_temporaries(out)  # leftovers of an interrupted export
    if log and run.config.get("task", {}).get("head") == "new":
        log(f"note: {run.path} was imported with a new {run.family} head, not trained yet: its labels are guesses "
            f"until {commands.name('train')} --task {run.family} --init-from {run.path} trains it")  # fmt: skip
    written = {}
    for number, exporter in enumerate(exporters, start=1):
        name, path = exporter.format, exporter.target(out)
        parent = os.path.dirname(path)  # `out`, or the SavedModel's base directory
        made_parent = not os.path.isdir(parent)
        os.makedirs(parent, exist_ok=True)
        remove_temporaries(parent)
        if log:
            log(f"export {name} ({number}/{len(exporters)}): writing {path} ...")
        start = time.time()
        try:
            with atomic_path(path) as tmp:
                exporter.export(run, tmp)
        except BaseException as error:
            if made_parent and not os.listdir(parent):
                os.rmdir(parent)
            if isinstance(error, Exception) and is_disk_full(error):
                done = f"{', '.join(written)} written, " if written else ""
                raise ExportDiskFullError(
                    disk_full_message(out, f"then export {name} again ({done}earlier files unchanged)")
                ) from None
            raise
        written[name] = path
        if log:
            log(f"export {name}: {path} ({artifact_size(path) / 1e6:.2f} MB, {time.time() - start:.0f} s)")
    return written


def _check_replaceable(path, exporter):
    """An earlier artifact of the same kind may be replaced; anything else at `path` is refused."""
    parent = os.path.dirname(path)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise ExportError(f"{parent} exists and is not a directory; move it away or export elsewhere (--out).")
    if not os.path.lexists(path):
        return
    if exporter.writes_directory:
        if os.path.isdir(path) and not os.path.islink(path) and os.path.exists(os.path.join(path, exporter.marker)):
            return
    elif os.path.isfile(path) and not os.path.islink(path):
        return
    raise ExportError(
        f"{path} exists and is not an earlier {exporter.format} artifact; move it away or export elsewhere (--out)."
    )


def artifact_size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
