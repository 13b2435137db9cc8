"""Exporters by name, and `export_run`, which runs them on a run directory."""

import os
import time

from export.run import ExportError, Run, atomic_output

FORMATS = {}
# Exporters of the same formats for classify, tag and lm runs (`export.families`).
FAMILY_EXPORTERS = {}


def register(name, filename):
    """Register `function(run, path, **options)` as format `name`, written to `filename`."""

    def decorator(function):
        FORMATS[name] = (function, filename)
        return function

    return decorator


def register_family(name, function):
    """Register `function(run, path, **options)` as format `name` of classify/tag/lm runs."""
    FAMILY_EXPORTERS[name] = function


def export_run(model_dir, formats=("saved_model",), out=None, run=None, log=print, **options):
    """Export the run at `model_dir` in each of `formats`.

    Args:
        model_dir: `runs/<name>`.
        formats: names in `FORMATS`.
        out: the directory to write into (default `runs/<name>/export/`).
        run: an already loaded `Run` of `model_dir`, to skip reloading.
        log: where progress lines go (`None`: nowhere).
        **options: passed to the exporters (e.g. `calibration_sentences`).

    Returns:
        `{format: path}` of what was written.
    """
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ExportError(f"Unknown export format(s) {unknown}. Expected some of {sorted(FORMATS)}.")
    run = run or Run(model_dir)
    if run.family != "translate":
        unknown = [name for name in formats if name not in FAMILY_EXPORTERS]
        if unknown:
            raise ExportError(
                f"{run.family} runs have no {unknown} export. Expected some of {sorted(FAMILY_EXPORTERS)}."
            )
    out = out or run.default_out
    written = {}
    for name in formats:
        function, filename = FORMATS[name]
        if run.family != "translate":
            function = FAMILY_EXPORTERS[name]
        path = os.path.join(out, filename)
        start = time.time()
        with atomic_output(path) as tmp:
            function(run, tmp, **options)
        written[name] = path
        if log:
            log(f"export {name}: {path} ({artifact_size(path) / 1e6:.2f} MB, {time.time() - start:.0f} s)")
    return written


def artifact_size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
