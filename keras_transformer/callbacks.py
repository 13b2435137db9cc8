"""Training callbacks that Keras does not ship."""

import os
import re
import sys
import time
import zipfile

import keras
import numpy as np

from keras_transformer.distribution import any_worker, broadcast_json, is_multi_worker
from keras_transformer.run_directory import atomic_write


class Heartbeat(keras.callbacks.Callback):
    """A line every `interval` seconds inside an epoch, where nothing else shows progress.

    With `verbose=2` Keras prints each epoch only at its end, so a long epoch
    (or the first one, which also traces and compiles the training step) is
    silent for minutes in a log. This callback says that the first step is
    being compiled, then prints the step, the epoch's seconds and the running
    loss once `interval` seconds have passed since its last line. `train.py`
    adds it with `--verbose 2`, and with `--verbose 1` when stdout is not a
    terminal (the compile line only: Keras's bar still redraws there).

    Args:
        interval: seconds between lines.
        steps: print the step lines (else only the compile line).
        stream: where to write (default: `sys.stdout`, as Keras's progress).
        clock: a function returning seconds (tests pass a fake one).

    Example:
    >>> model.fit(data, epochs=10, verbose=2, callbacks=[Heartbeat(30)])
    """

    def __init__(self, interval=30.0, steps=True, stream=None, clock=time.monotonic):
        super().__init__()
        if not interval > 0:
            raise ValueError(f"`interval` must be positive. Received: interval={interval}")
        self.interval = interval
        self.steps = steps
        self.stream = stream
        self.clock = clock
        self.compiled = False

    def _print(self, text):
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_begin(self, logs=None):
        self.last = self.clock()
        if not self.compiled:
            self._print("Compiling the training step: the first batch takes longer.")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = self.last = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        self.compiled = True
        now = self.clock()
        if not self.steps or now - self.last < self.interval:
            return
        self.last = now
        steps = self.params.get("steps") if self.params else None
        loss = (logs or {}).get("loss")
        self._print(
            f"  epoch {self.epoch + 1}: step {batch + 1}{f'/{steps}' if steps else ''}, "
            f"{now - self.epoch_start:.0f} s" + (f", loss {float(loss):.4f}" if loss is not None else "")
        )


class TimeLimit(keras.callbacks.Callback):
    """Stop `fit` once `minutes` of training have passed.

    The check runs after every batch (every 10th under a multi-worker
    strategy, where all workers decide together), so the epoch in progress
    ends early; Keras still validates it and calls the epoch-end callbacks
    (scores, checkpoints), then stops. The clock starts when training begins
    and includes validation.

    Args:
        minutes: the budget, in minutes (fractions allowed).

    Example:
    >>> model.fit(data, epochs=100, callbacks=[TimeLimit(60)])
    """

    MULTI_WORKER_EVERY = 10  # steps between the workers' joint checks

    def __init__(self, minutes):
        super().__init__()
        if not minutes > 0:
            raise ValueError(f"`minutes` must be positive. Received: minutes={minutes}")
        self.minutes = minutes
        self.start = None
        self.stopped_at_epoch = None

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        over = time.monotonic() - self.start >= 60 * self.minutes
        if is_multi_worker():
            # Every worker stops at the same step: every `MULTI_WORKER_EVERY` steps they ask whether any is
            # out of time (a collective of its own, not worth paying each step).
            self.steps += 1
            if self.steps % self.MULTI_WORKER_EVERY:
                return
            over = any_worker(over)
        if over:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.stopped_at_epoch is None:
            self.stopped_at_epoch = epoch


class Cooldown(keras.callbacks.Callback):
    """Let the learning rate fall linearly to zero over the last `fraction` of training.

    An inverse-square-root schedule (the paper's) is still high when a
    budget runs out; a linear cooldown to zero over the last part of the run
    ends training at a low rate whatever the budget, where averaging
    checkpoints only approximates one. The model's optimizer must be
    `keras_transformer.optimizers.Adam(cooldown=True)` (directly or inside
    a `LossScaleOptimizer`); this callback sets its cooldown window once:

    - without a time limit, at the start: the run's last
      `fraction * epochs * steps` iterations (after the first epoch when
      the number of steps per epoch is not known in advance);
    - with `minutes`, when the next epoch end would come after the cooldown
      should start: from the seconds per step of the last epoch
      (validation included) it predicts the iteration at which the time
      left is `fraction` of the budget and the one at which the budget runs
      out (or the last epoch ends, if sooner), and decays between them.

    The window is a variable of the optimizer, so a resumed run keeps its
    window (pass the earlier processes' seconds as `elapsed_seconds`).
    Under a multi-worker strategy every worker takes the chief's window.

    Args:
        fraction: the part of training spent cooling down, in (0, 1).
        minutes: the run's whole time budget, or `None` (epochs only).
        elapsed_seconds: training seconds of earlier processes of the run.
        verbose: print the window when it is set.

    Example:
    >>> model.compile(optimizer=kt.optimizers.Adam(schedule, cooldown=True), ...)
    >>> model.fit(data, epochs=100, callbacks=[TimeLimit(60), Cooldown(0.2, minutes=60)])
    """

    def __init__(self, fraction, minutes=None, elapsed_seconds=0.0, verbose=0):
        super().__init__()
        if not 0 < fraction < 1:
            raise ValueError(f"`fraction` must be between 0 and 1. Received: fraction={fraction}")
        if minutes is not None and not minutes > 0:
            raise ValueError(f"`minutes` must be positive. Received: minutes={minutes}")
        self.fraction, self.minutes = fraction, minutes
        self.elapsed_seconds, self.verbose = elapsed_seconds, verbose
        self.window = None

    def _optimizer(self):
        from keras_transformer.optimizers import Adam

        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if not (isinstance(optimizer, Adam) and optimizer.cooldown):
            raise ValueError("`Cooldown` needs the model's optimizer to be "
                             "`keras_transformer.optimizers.Adam(cooldown=True)`.")  # fmt: skip
        return optimizer

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        window = [float(x) for x in keras.ops.convert_to_numpy(optimizer.cooldown_window)]
        self.window = window if window[0] >= 0 else None  # a resumed run keeps its window
        if self.window is not None and self.verbose:
            print(f"Cooldown (resumed): the learning rate falls linearly to zero from iteration {int(window[0])} "
                  f"to {int(window[1])}.")  # fmt: skip
        self.start = self.epoch_start = time.monotonic()
        self.epoch_steps = 0
        steps = self.params.get("steps")
        if self.window is None and self.minutes is None and steps:
            end = self.params["epochs"] * steps
            iteration = int(keras.ops.convert_to_numpy(optimizer.iterations))
            self._set(max(iteration, round((1 - self.fraction) * end)), end)

    def on_train_batch_end(self, batch, logs=None):
        self.epoch_steps += 1

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        seconds, steps = now - self.epoch_start, self.epoch_steps
        self.epoch_start, self.epoch_steps = now, 0
        if self.window is not None or not steps:
            return
        iteration = int(keras.ops.convert_to_numpy(self._optimizer().iterations))
        end = iteration + (self.params["epochs"] - epoch - 1) * steps  # the last epoch's end, at this epoch's length
        if self.minutes is not None:  # the budget's end, at this epoch's seconds per step (validation included)
            left = 60 * self.minutes - self.elapsed_seconds - (now - self.start)
            end = min(end, iteration + round(max(0.0, left) * steps / seconds))
        start = round((1 - self.fraction) * end)
        if self.minutes is not None and start > iteration + steps:
            start = end = None  # decide at a later epoch end, on a fresher step time
        window = broadcast_json(None if start is None else [max(iteration, start), end])  # the chief's, on every worker
        if window is not None:
            self._set(*window)

    def _set(self, start, end):
        self.window = [float(start), float(max(end, start + 1))]
        self._optimizer().cooldown_window.assign(np.array(self.window, "float32"))
        if self.verbose:
            print(f"Cooldown: the learning rate falls linearly to zero from iteration {int(self.window[0])} to "
                  f"{int(self.window[1])}.")  # fmt: skip


class EpochWeights(keras.callbacks.Callback):
    """Keep the weights of the last `keep` epochs on disk, for averaging.

    After each epoch the model's weights go to `directory/epoch-NNNN.npz`
    (written to a temporary name, then renamed) and files older than the
    last `keep` epochs are removed. The files survive an interrupted run,
    so a resumed run averages across the interruption.
    `average_weights(model, callback.paths())` then sets the model to their
    mean: the paper's "averaging the last 5 checkpoints".

    Args:
        directory: where the files go (created if missing).
        keep: how many epochs to keep; the paper averages 5.

    Example:
    >>> weights = EpochWeights("runs/en-de/epoch_weights", keep=5)
    >>> model.fit(data, epochs=20, callbacks=[weights])
    >>> average_weights(model, weights.paths())
    """

    def __init__(self, directory, keep=5):
        super().__init__()
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` must be a positive integer. Received: keep={keep}")
        self.directory = directory
        self.keep = keep

    def paths(self):
        """The kept files, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        names = sorted(name for name in os.listdir(self.directory) if _EPOCH_FILE.fullmatch(name))
        return [os.path.join(self.directory, name) for name in names]

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        save_weights(os.path.join(self.directory, f"epoch-{epoch + 1:04d}.npz"), self.model)
        for path in self.paths()[: -self.keep]:
            os.remove(path)


_EPOCH_FILE = re.compile(r"epoch-\d{4,}\.npz")


def save_weights(path, model):
    """Write `model.weights` to `path` (.npz), with their paths and shapes."""
    arrays = {f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
    names = np.array([v.path for v in model.weights])
    atomic_write(path, lambda tmp: np.savez(tmp, names=names, **arrays))


def average_weights(model, paths):
    """Set `model`'s weights to the mean of the weight files at `paths`.

    Floating-point weights are averaged (in float64, then cast back);
    others (integer step counters, random-seed states) keep the model's
    current values. The files must come from `save_weights` on a model of
    the same architecture.

    Returns:
        The model.

    Raises:
        ValueError: no paths, or a file that is corrupt or belongs to a
            model with other weights.
    """
    if not paths:
        raise ValueError("No weight files to average.")
    expected = [(v.path, tuple(v.shape)) for v in model.weights]
    sums = [None] * len(expected)
    for path in paths:
        try:
            with np.load(path) as data:
                names = [str(name) for name in data["names"]]
                arrays = [data[f"w{i}"] for i in range(len(names))]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable weight file: {error}") from None
        found = [(name, tuple(array.shape)) for name, array in zip(names, arrays)]
        if found != expected:
            raise ValueError(f"{path} holds the weights of another model (names or shapes differ from this one's).")
        for i, array in enumerate(arrays):
            sums[i] = array.astype("float64") if sums[i] is None else sums[i] + array
    for variable, total in zip(model.weights, sums):
        if keras.backend.is_float_dtype(variable.dtype):
            variable.assign((total / len(paths)).astype(variable.dtype))
    return model


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's `EarlyStopping` whose patience counts the epochs of earlier processes of a resumed run.

    Args:
        monitor, mode: the monitored log key and `"min"` or `"max"`.
        patience: epochs without improvement before training stops.
        history: rows (dicts) of the run's earlier epochs, oldest first,
            as `history.csv` holds them.
        verbose: print a line when it stops training.

    Example:
    >>> model.fit(data, epochs=100, callbacks=[EarlyStopping("val_loss", "min", patience=3)])
    """

    def __init__(self, monitor, mode, patience, history=(), verbose=0):
        super().__init__(monitor=monitor, mode=mode, patience=patience, verbose=verbose)
        self.history = [float(row[monitor]) for row in history if row.get(monitor) not in (None, "")]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.history and self.monitor_op is None:
            self._set_monitor_op()
        for score in self.history:  # replay the earlier epochs: best score and epochs waited since
            if self.best is None or bool(self._is_improvement(score, self.best)):
                self.best, self.wait = score, 0
            else:
                self.wait += 1
