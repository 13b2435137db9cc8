"""Fit a task into a run directory: checkpoints, resume, time limit, weight averaging, evaluation.

    from keras_transformer.tasks import TASKS, TranslateOptions
    from keras_transformer.tasks.trainer import TrainingOptions, open_run, train

    task = TASKS["translate"](TranslateOptions(epochs=2))
    results = train(task, open_run("runs/demo"), TrainingOptions(verbose=2))
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings

import keras

from keras_transformer import callbacks as kt_callbacks
from keras_transformer import distribution
from keras_transformer.distribution import STRATEGIES, build_under_strategy, shard_evenly, strategy_scope, worker_role
from keras_transformer.checks import check_positive_int
from keras_transformer.models.common import ARCHITECTURE, set_dtype_policy
from keras_transformer.optimizers import Adam
from keras_transformer.run_checkpoint import BestModelCheckpoint, HistoryLog, RunCheckpoint, load_snapshot
from keras_transformer.run_checkpoint import training_status
from keras_transformer.run_directory import (
    RunDirectory, RunDirectoryError, RunLock, RunLockedError, check_writable, remove_temporaries,
)  # fmt: skip

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SUMMARY_FORMATS = {
    "bleu": "BLEU {:.2f}",
    "bleu_lowercase": "lowercased BLEU {:.2f}",
    "chrf": "chrF {:.2f}",
    "cross_entropy": "cross-entropy {:.4f}",
    "perplexity": "perplexity {:.2f}",
}


@dataclasses.dataclass
class TrainingOptions:
    """How a task is trained, whatever the task.

    Attributes:
        precision: Keras dtype policy while training (`"float32"`,
            `"mixed_bfloat16"`, `"mixed_float16"`); the saved model computes
            in float32 afterwards.
        time_limit: minutes of training at most (the epoch in progress ends
            early and is scored), or `None`.
        cooldown: let the learning rate fall linearly to zero over this
            fraction of the run (of `time_limit` when set, else of the
            epochs), or `None` (`keras_transformer.callbacks.Cooldown`).
        average_last: average the weights of the last N epochs and keep the
            average if it scores better than the best epoch (the paper: 5).
        verbose: Keras progress output (0, 1, 2).
        resume: continue the run directory's interrupted training.
        tensorboard: log to `<run>/tensorboard/`: loss, accuracy, learning
            rate and validation scores each epoch, and the task's pictures
            (translation: cross-attention of a few validation sentences).
        early_stopping: stop after this many epochs without a better
            monitored score (counted across resumes), or `None`.
        distribute: `"none"`; `"mirrored"`: data-parallel over the local
            devices; `"multi-worker"`: over the workers of the `TF_CONFIG`
            cluster, each process opening its run with
            `open_run(path, distribute="multi-worker")` (the chief writes the
            run directory, the others a temporary one they remove)
            (`keras_transformer.distribution`). The batch size is the global
            batch.
        cpu_devices: split the CPU into this many logical devices (to run
            `distribute` mirrored where there is no GPU), or `None`.
    """

    precision: str = "float32"
    time_limit: float = None
    cooldown: float = None
    average_last: int = None
    verbose: int = 1
    resume: bool = False
    tensorboard: bool = True
    early_stopping: int = None
    distribute: str = "none"
    cpu_devices: int = None

    def __post_init__(self):
        if self.distribute not in STRATEGIES:
            raise ValueError(f"`distribute` must be one of {STRATEGIES}. Received: distribute={self.distribute!r}")
        check_positive_int(self.cpu_devices, "cpu_devices", allow_none=True)
        if self.cpu_devices and self.distribute == "multi-worker":
            raise ValueError("`cpu_devices` is for `distribute` mirrored; a multi-worker cluster trains on each "
                             "worker's GPUs, or its CPU as one device.")  # fmt: skip
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={self.precision!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"`time_limit` must be a positive number of minutes. Received: {self.time_limit}")
        if self.cooldown is not None and not 0 < self.cooldown < 1:
            raise ValueError(f"`cooldown` is a fraction of the run, between 0 and 1. Received: {self.cooldown}")
        if self.average_last is not None and self.average_last < 1:
            raise ValueError(f"`average_last` needs a positive number of epochs. Received: {self.average_last}")
        if self.early_stopping is not None and (
            not isinstance(self.early_stopping, int) or isinstance(self.early_stopping, bool) or self.early_stopping < 1
        ):
            raise ValueError(f"`early_stopping` is a patience in epochs, at least 1. Received: {self.early_stopping}")


# What a resumed run keeps from its start: its data and the tokenizers trained on it.
RESUMED_DATA = (
    "task", "train_src", "train_tgt", "train_tsv", "val_src", "val_tgt", "val_tsv", "train_conll", "val_conll",
    "train_text", "val_text", "tokenizer", "vocab_size", "joint_vocabulary", "tokenizer_sample", "max_line_chars",
    "init_from", "marian_compatible",
)  # fmt: skip


def describe(model):
    """One line on the architecture of `model` (any family)."""
    body = getattr(model, "backbone", model)
    return (
        f"{type(model).__name__}, N={body.num_layers} layers, d_model {body.hidden_dim}, {body.num_heads} heads, "
        f"d_ff {body.intermediate_dim}, {body.position} positions, {model.count_params():,} parameters"
    )


def open_run(path, resume=False, distribute="none"):
    """The `RunDirectory` at `path` for a new run, or for resuming it; checked before anything is written.

    A new run may reuse a directory that holds no finished epoch (a run
    killed before its first one); resuming needs a run that exists and has
    not finished. Leftover temporaries of interrupted writes are removed.
    Under `distribute="multi-worker"` only the chief opens `path`; another
    worker gets a new temporary directory (its copy of what the chief
    writes), which `train` removes: it writes nothing a user could take for
    a run.
    """
    role = worker_role(distribute)
    if role is not None and not role.chief:
        run = RunDirectory(tempfile.mkdtemp(prefix=f"keras-transformer-{role.task_type}{role.index}-"))
        run.scratch = True
        return run
    status = training_status(path)
    if resume and status == "new":
        raise ValueError(f"`resume`: there is no run at {path} to continue.")
    if resume and status == "finished":
        raise ValueError(f"`resume`: {path} has no interrupted training to continue (it finished).")
    if not resume and status in ("interrupted", "finished"):
        raise FileExistsError(f"{path} already holds a run; resume it (`resume`) or choose another name.")
    check_writable(os.path.dirname(os.path.abspath(path)), "cannot write runs into {directory} (`out`)")
    lock = RunLock(path).acquire()  # a second process on the same run is refused, naming this one
    try:
        if training_status(path) != status:  # changed while the holder before this one wrote it
            raise RunLockedError(f"{path} changed while this process waited for it; run the command again.")
        run = RunDirectory(path, create=True, exist_ok=True)
    except BaseException:
        lock.release()
        raise
    run.lock = lock  # released by `release_run` (train.py: when training and export end)
    remove_temporaries(run.path)
    remove_temporaries(run.checkpoint_dir)
    return run


def release_run(run):
    """Let other processes write `run` again (the lock `open_run` took)."""
    lock = getattr(run, "lock", None)
    if lock is not None:
        lock.release()


def train(task, run, options=None):
    """Prepare `task`, fit its model into `run`, evaluate the best model; returns the evaluation.

    The run directory (`keras_transformer.run_directory.RunDirectory`, from
    `open_run`) gets `config.json`, the best `model.keras`, `history.csv`,
    `evaluation.json`, the tokenizers and `calibration.txt`; `checkpoints/`
    holds the latest epoch's snapshot until the run is evaluated, so a run
    killed at any point continues with `options.resume`
    (`keras_transformer.run_checkpoint`).
    """
    options = options or TrainingOptions()
    role = worker_role(options.distribute)
    helper = role is not None and not role.chief
    if helper != getattr(run, "scratch", False):
        raise ValueError(f"`distribute` {options.distribute}: open the run with "
                         f"open_run(path, distribute={options.distribute!r}) on every worker.")  # fmt: skip
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(options.precision)  # every layer built below computes in this dtype
    try:
        with strategy_scope(options.distribute, options.cpu_devices) as devices:
            seconds, epoch_weights = _fit(task, run, options, devices, role)
    except Exception as error:
        # Bad data found while preparing (an unreadable file, a bad vocabulary): a run directory this
        # call created, with no epoch in it, is removed, so the name stays free and nothing is left half made.
        if run.created and not os.path.exists(run.file(run.history_file)):
            if training_status(run) == "started":
                shutil.rmtree(run.path, ignore_errors=True)
        message = _cluster_error(error) if role is not None else None
        if message is None:
            raise
        raise ConnectionError(message) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if helper:
            shutil.rmtree(run.path, ignore_errors=True)
    if helper:
        print(f"\nTraining finished ({seconds:.0f} s); the chief evaluates and writes the run.")
        return {"train_seconds": round(seconds, 1), "worker": str(role)}
    averaged = _keep_better_average(run, task, epoch_weights) if epoch_weights else None
    if options.precision != "float32":
        # The run's model.keras computes in float32 from here on (translate, export): same weights.
        run.save_model(set_dtype_policy(run.load_model(), "float32"))

    results = task.evaluate(run.load_model(compile=False), run)
    results["train_seconds"] = round(seconds, 1)
    if averaged:
        results["averaged"] = averaged
    calibration = task.calibration_sentences()
    if calibration:
        run.write_calibration(calibration)
    run.write_json(run.evaluation_file, results)
    shutil.rmtree(run.checkpoint_dir, ignore_errors=True)  # finished: nothing left to resume
    _print_summary(task, run, results, seconds)
    return results


def _with_defaults(model_config):
    """`model_config` with every architecture argument it leaves out at its default.

    A run recorded before an argument existed (e.g. `position_layout`) names
    the same model as one that writes the default out.
    """
    if not isinstance(model_config, dict):
        return model_config
    return {**ARCHITECTURE, **model_config}


def _fit(task, run, options, devices="one device", role=None):
    """Fit into `run`; `(training seconds, the weight files of the last epochs to average or None)`.

    Under multi-worker (`role`), each worker prepares the task itself (the
    tokenizers are trained from the same seeded sample: checked equal), and
    the chief's resumed state and weights are broadcast to the others.
    """
    if options.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("`tensorboard` logging needs the tensorboard package: pip install tensorboard (or turn it off)")
    resume = options.resume and not getattr(run, "scratch", False)  # a helper worker learns the state from the chief
    task.show_progress = options.verbose != 0
    task.prepare(run, resume=resume)
    model = task.build_model()
    if options.cooldown:
        _enable_cooldown(model)
    if options.average_last and not task.scored:
        raise ValueError("`average_last` needs a validation set (`val_src`/`val_tgt` or `val_tsv`) to compare with.")
    model_config = json.loads(json.dumps(task.model_config(model)))
    state, weights = load_snapshot(run.checkpoint_dir) if resume else (None, None)
    if resume and os.path.exists(run.file(run.config_file)):
        earlier = run.read_json(run.config_file)
        if _with_defaults(earlier.get("model")) != _with_defaults(model_config):
            raise ValueError(f"`resume`: the model options differ from the run's {run.file(run.config_file)}.")
        before, now = earlier.get("training", {}), {**dataclasses.asdict(task.options), "task": task.name}
        changed = [name for name in RESUMED_DATA if name in before and name in now and before[name] != now[name]]
        if changed:  # the run goes on with its tokenizers and data: a new value would be recorded, not used
            raise ValueError(
                "`resume` continues the run on its own data and tokenizers; these differ from its "
                f"{run.config_file}: " + ", ".join(f"`{name}` (was {before[name]!r}, now {now[name]!r})" for name in changed)
            )
        if bool(earlier.get("training", {}).get("cooldown")) != bool(options.cooldown):  # the optimizer's variables
            raise ValueError(f"`resume`: the run was started {'with' if not options.cooldown else 'without'} "
                             f"`cooldown`; resume it {'with' if not options.cooldown else 'without'} it too.")  # fmt: skip
    training = {**dataclasses.asdict(task.options), **dataclasses.asdict(options), "task": task.name}
    run.write_json(
        run.config_file,
        {"model": model_config, "training": training, "task": task.config, "backend": keras.backend.backend()},
    )
    where = f"Temporary copy of the chief's files (removed at the end): {run.path}" if getattr(run, "scratch", False) \
        else f"Run directory: {run.path}"
    init_from = getattr(task.options, "init_from", None)  # the architecture is that run's, not the preset's
    origin = f"from {init_from}" if init_from else f"{task.options.preset} preset"
    print(f"{where}\nTask: {task.description}\nModel: {origin}, {describe(model)}")
    if options.distribute != "none":
        print(f"Devices: {devices}; --batch-size {task.options.batch_size} is the global batch")
    if role is not None:
        _check_same_tokenizers(run)
        state = distribution.broadcast_json(state)  # the chief's
        if options.resume and state is None:
            raise ValueError("`resume`: the chief has no interrupted training to continue.")
    state = state or {"epoch": 0, "best": None, "history": [], "seconds": 0.0}
    if weights or role is not None:  # every worker builds the optimizer at this point: its variables are collective
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    if weights:
        try:
            model.load_weights(weights)
        except Exception as error:  # a snapshot damaged after it was written (a bad disk, a copy cut short)
            raise RunDirectoryError(
                f"{weights} is corrupt ({str(error).splitlines()[0][:160]}); the run cannot continue from it: "
                "train it again under another `name` (its model.keras, the best epoch so far, is unchanged)."
            ) from None
    if state["epoch"]:
        print(f"Resuming after epoch {state['epoch']} (best {task.monitor[0]} so far: {state['best']})")
    monitor, mode = task.monitor
    best = BestModelCheckpoint(run.save_model, monitor=monitor, mode=mode, best=state["best"])
    history = HistoryLog(run.file(run.history_file), rows=state["history"])
    checkpoint = RunCheckpoint(run.checkpoint_dir, best, history, seconds=state["seconds"])
    callbacks = [*task.callbacks(model), best, history]  # task callbacks add validation scores to the logs
    if options.tensorboard:
        log_dir = run.file(run.tensorboard_dir)
        callbacks += [keras.callbacks.TensorBoard(log_dir, write_graph=False), *task.image_callbacks(model, log_dir)]
    if options.early_stopping:
        callbacks.append(
            kt_callbacks.EarlyStopping(monitor, mode, options.early_stopping, history=state["history"], verbose=1)
        )
    if options.average_last:
        epoch_weights = kt_callbacks.EpochWeights(run.epoch_weights_dir, keep=options.average_last)
        callbacks.append(epoch_weights)
    remaining = None if options.time_limit is None else options.time_limit - state["seconds"] / 60
    if remaining is not None:
        callbacks.insert(0, kt_callbacks.TimeLimit(max(remaining, 1e-9)))
    if options.cooldown:
        callbacks.insert(0, kt_callbacks.Cooldown(options.cooldown, options.time_limit, state["seconds"], verbose=1))
    terminal = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    if options.verbose == 2 or (options.verbose and not terminal):  # output with no progress inside an epoch
        callbacks.insert(0, kt_callbacks.Heartbeat(steps=options.verbose == 2))
    callbacks.append(checkpoint)  # last: the snapshot sees every other callback's state
    fit_arguments = distribution.shard_by_data(shard_evenly(task.fit_arguments()))
    build_under_strategy(model, fit_arguments)
    if role is not None and state["epoch"]:
        distribution.broadcast_from_chief(model.variables + (model.optimizer.variables if model.optimizer else []))
    if remaining is None or remaining > 0:
        try:
            with warnings.catch_warnings():
                # A streamed epoch is one pass over the files, whose length Keras learns when the first pass
                # runs out (it then warns "Your input ran out of data"); with `steps_per_epoch` it repeats.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                model.fit(epochs=task.options.epochs, initial_epoch=state["epoch"], callbacks=callbacks,
                          verbose=options.verbose, **fit_arguments)  # fmt: skip
        except Exception as error:
            message = _data_error(error)
            if message is None:
                raise
            raise ValueError(message) from None
    if not os.path.exists(run.file(run.model_file)):
        raise ValueError(f"{run.path}: training ended before any epoch finished; nothing to evaluate.")
    return checkpoint.elapsed(), (epoch_weights.paths() if options.average_last else None)


def _enable_cooldown(model):
    """Give `model`'s optimizer (not built yet) the cooldown window `kt.callbacks.Cooldown` sets."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if not isinstance(optimizer, Adam):
        raise ValueError(f"`cooldown` needs keras_transformer.optimizers.Adam; this task trains with "
                         f"{type(optimizer).__name__}.")  # fmt: skip
    optimizer.cooldown = True


def _check_same_tokenizers(run):
    """Every worker's tokenizers must be the chief's (each trains its own from the same seeded sample)."""
    import zlib

    directory = run.file(run.tokenizer_dir)
    fingerprint = 0
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                fingerprint = zlib.crc32(name.encode() + f.read(), fingerprint)
    if not distribution.same_on_every_worker(fingerprint & 0x7FFFFFFF):
        raise ValueError("the workers built different tokenizers from the training data: give every worker the "
                         "same files and options (--seed, --vocab-size, --tokenizer-sample).")  # fmt: skip


def _cluster_error(error):
    """A one-line message when `error` says a worker of the cluster stopped or cannot be reached, else `None`."""
    import sys

    tf = sys.modules.get("tensorflow")
    lost = () if tf is None else (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    import re

    text = str(getattr(error, "message", error))
    coordination = tf is not None and isinstance(error, tf.errors.InternalError) and re.search(
        r"Barrier failed|heartbeat timeout|CoordinationService", text
    )  # the cluster's coordination service gave up (a task that never started or stopped answering)
    if not isinstance(error, lost) and not coordination:
        return None
    found = re.search(r"tasks are unhealthy[^\n]*|Connection reset by peer|Socket closed|failed to connect[^\n]*|"
                      r"Connection refused|Deadline Exceeded|[^\n]*timed out[^\n]*|heartbeat timeout|"
                      r"Barrier failed", text)  # fmt: skip
    cause = found.group(0).strip(" :") if found else type(error).__name__
    return (f"a worker of the cluster stopped or cannot be reached ({cause}); the run directory keeps its last "
            f"finished epoch: start every worker again with --resume.")  # fmt: skip


def _data_error(error):
    """A one-line message when `error` is the input stream's (misaligned or corrupt files), else `None`."""
    import re
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    from keras_transformer.data.streaming import MISALIGNED

    text = str(error.message)
    found = re.search(re.escape(MISALIGNED) + r".*?lines\.", text)
    if found:
        return found.group(0).replace('\\"', "").replace('"', "")
    if isinstance(error, tf.errors.DataLossError):
        return f"a training file is corrupt: {text.splitlines()[0]}"
    return None


def _keep_better_average(run, task, paths):
    """Average the weight files at `paths` into the run's model; save it if it beats the best epoch's model."""
    _, mode = task.monitor
    model = run.load_model()
    best_score = task.score(model)
    kt_callbacks.average_weights(model, paths)
    averaged_score = task.score(model)
    better = averaged_score > best_score if mode == "max" else averaged_score < best_score
    if better:
        run.save_model(model)
    epochs = [int(os.path.basename(path)[6:-4]) for path in paths]
    print(
        f"Average of epochs {epochs[0]}-{epochs[-1]}: {averaged_score:.4g} against the best epoch's {best_score:.4g} "
        f"({'keeping the average' if better else 'keeping the best epoch'})"
    )
    return {"epochs": epochs, "score": averaged_score, "best_epoch_score": best_score, "kept_average": better}


def _print_summary(task, run, results, seconds):
    monitor, _ = task.monitor
    summary = ", ".join(
        SUMMARY_FORMATS.get(key, key.replace("_", " ") + " {:.2%}").format(value)
        for key, value in results.items()
        if isinstance(value, float) and key != "train_seconds"
    )
    print(
        f"\nValidation, best epoch by {monitor}: {summary or 'no validation set'}\n"
        f"Training time: {seconds:.0f} s. Model: {run.file(run.model_file)}"
    )
    for key, title in (("samples", "Sampled texts"), ("samples_top_p", "Sampled texts, top-p 0.9")):
        if results.get(key):
            print(f"{title}:\n" + "\n".join(f"  {text}" for text in results[key]))
