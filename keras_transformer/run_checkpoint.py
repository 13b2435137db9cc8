"""Training that survives `kill -9` at any instant: snapshots, the best model, the history.

Three callbacks, each writing whole files to a temporary name and renaming
them (`run_directory.atomic_path`), so the previous good file survives any
interruption:

- `BestModelCheckpoint` saves the model when the monitored score improves;
  its best score so far is restored when a run resumes.
- `HistoryLog` rewrites `history.csv` with every epoch's row (the rows of
  earlier processes included) after each epoch.
- `RunCheckpoint` (last in the list) snapshots the weights with the
  optimizer state, the finished epochs, the best score, the history rows and
  the training seconds into `checkpoints/epoch-NNNN/`, then points
  `checkpoints/latest.json` at it and removes older snapshots. A resumed run
  starts from the newest complete snapshot: every file then tells one story
  (a kill between a best-model save and its snapshot re-runs that epoch, and
  its first result is forgotten by the history as by the best score).
"""

import csv
import io
import json
import os
import re
import shutil
import time

import keras
import numpy as np

from keras_transformer.run_directory import RunDirectory, atomic_path, temporary_prefix, write_json, write_text

SNAPSHOT_PREFIX = "epoch-"
POINTER_FILE = "latest.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"


def load_snapshot(directory):
    """`(state dict, weights path)` of the newest complete snapshot in `directory`, or `(None, None)`.

    The pointer file names it; when the pointer is missing or damaged (a
    kill while it was written), the newest snapshot folder holding both files
    is taken.
    """
    if not os.path.isdir(directory):
        return None, None
    candidates = []
    try:
        with open(os.path.join(directory, POINTER_FILE), encoding="utf-8") as f:
            candidates.append(json.load(f)["snapshot"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    candidates += sorted((name for name in os.listdir(directory) if name.startswith(SNAPSHOT_PREFIX)), reverse=True)
    for name in candidates:
        if not (isinstance(name, str) and re.fullmatch(re.escape(SNAPSHOT_PREFIX) + r"\d+", name)):
            continue  # a pointer naming anything but a snapshot folder here (`../..`, `/etc`) is never followed
        folder = os.path.join(directory, name)
        try:
            with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if os.path.isfile(os.path.join(folder, WEIGHTS_FILE)) and isinstance(state, dict) and "epoch" in state:
            return state, os.path.join(folder, WEIGHTS_FILE)
    return None, None


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model (`save(model)`, atomic) whenever `monitor` improves.

    Args:
        save: `save(model)` writes the model where it belongs, atomically.
        monitor: the log name of the score.
        mode: `"min"` or `"max"`.
        best: the best score of earlier epochs (a resumed run), or `None`.
    """

    def __init__(self, save, monitor="val_loss", mode="min", best=None):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f'`mode` must be "min" or "max". Received: mode={mode!r}')
        self.save, self.monitor, self.mode, self.best = save, monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"`{self.monitor}` is not in the epoch's logs ({sorted(logs or {})}): nothing to monitor.")
        value = float(value)
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
            self.save(self.model)


class HistoryLog(keras.callbacks.Callback):
    """`history.csv`: one row per epoch (earlier processes' rows first), rewritten whole after each epoch.

    Args:
        path: the CSV file.
        rows: rows of earlier epochs (a resumed run's), dicts of strings.
    """

    def __init__(self, path, rows=()):
        super().__init__()
        self.path = path
        self.rows = [dict(row) for row in rows]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": str(epoch)}
        row.update({key: repr(float(value)) if np.ndim(value) == 0 and not isinstance(value, str) else str(value)
                    for key, value in (logs or {}).items()})  # fmt: skip
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        keys = ["epoch"] + sorted({key for r in self.rows for key in r} - {"epoch"})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys, restval="NA", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())


class RunCheckpoint(keras.callbacks.Callback):
    """Snapshot everything a resumed run needs after each epoch (put it last among the callbacks).

    Args:
        directory: `checkpoints/` of the run.
        best_model: the run's `BestModelCheckpoint` (its best score is saved).
        history: the run's `HistoryLog` (its rows are saved).
        seconds: training seconds of earlier processes.
    """

    def __init__(self, directory, best_model, history, seconds=0.0):
        super().__init__()
        self.directory, self.best_model, self.history = directory, best_model, history
        self.seconds = seconds
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def elapsed(self):
        """Training seconds so far, earlier processes included."""
        return self.seconds + (time.monotonic() - self.start if self.start is not None else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        name = f"{SNAPSHOT_PREFIX}{epoch + 1:04d}"
        state = {
            "epoch": epoch + 1,
            "best": self.best_model.best,  # a float (or None)
            "history": self.history.rows,
            "seconds": self.elapsed(),
        }
        with atomic_path(os.path.join(self.directory, name)) as tmp:
            os.makedirs(tmp)
            self.model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
            with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f)
        write_json(os.path.join(self.directory, POINTER_FILE), {"snapshot": name})
        for other in os.listdir(self.directory):
            if other != name and (other.startswith(SNAPSHOT_PREFIX) or other.startswith(temporary_prefix())):
                shutil.rmtree(os.path.join(self.directory, other), ignore_errors=True)


def training_status(run):
    """Where the run at `run` (a `RunDirectory` or a path) stands.

    Returns:
        `"new"` (no such directory), `"started"` (a directory with no epoch
        snapshotted: killed early; resuming starts over, and so may a plain
        rerun),
        `"interrupted"` (a snapshot to resume from) or `"finished"`
        (evaluated; its checkpoints are gone).
    """
    path = run.path if isinstance(run, RunDirectory) else str(run)
    if not os.path.isdir(path):
        return "new"
    if load_snapshot(os.path.join(path, RunDirectory.checkpoint_dir_name))[0] is not None:
        return "interrupted"
    if os.path.exists(os.path.join(path, RunDirectory.evaluation_file)):
        return "finished"
    return "started"
