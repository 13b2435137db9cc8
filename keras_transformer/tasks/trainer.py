"""Fit a task into a run directory: checkpoints, resume, time limit, weight averaging, evaluation.

    from keras_transformer.run_directory import RunDirectory
    from keras_transformer.tasks import TASKS, TranslateOptions
    from keras_transformer.tasks.trainer import TrainingOptions, train

    task = TASKS["translate"](TranslateOptions(epochs=2))
    results = train(task, RunDirectory("runs/demo", create=True), TrainingOptions(verbose=2))
"""

import dataclasses
import json
import os
import time

import keras

from keras_transformer import callbacks as kt_callbacks
from keras_transformer.models.common import set_dtype_policy

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
        average_last: average the weights of the last N epochs and keep the
            average if it scores better than the best epoch (the paper: 5).
        verbose: Keras progress output (0, 1, 2).
        resume: continue the run directory's interrupted training.
    """

    precision: str = "float32"
    time_limit: float = None
    average_last: int = None
    verbose: int = 1
    resume: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={self.precision!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"`time_limit` must be a positive number of minutes. Received: {self.time_limit}")
        if self.average_last is not None and self.average_last < 1:
            raise ValueError(f"`average_last` needs a positive number of epochs. Received: {self.average_last}")


def describe(model):
    """One line on the architecture of `model` (any family)."""
    body = getattr(model, "backbone", model)
    return (
        f"{type(model).__name__}, N={body.num_layers} layers, d_model {body.hidden_dim}, {body.num_heads} heads, "
        f"d_ff {body.intermediate_dim}, {body.position} positions, {model.count_params():,} parameters"
    )


def train(task, run, options=None):
    """Prepare `task`, fit its model into `run`, evaluate the best model; returns the evaluation.

    The run directory (`keras_transformer.run_directory.RunDirectory`) gets
    `config.json`, the best `model.keras`, `history.csv`, `evaluation.json`,
    the tokenizers and `calibration.txt`; `checkpoints/` exists only while
    training is unfinished, so `options.resume` can continue it.
    """
    options = options or TrainingOptions()
    if options.resume and not os.path.isdir(run.checkpoint_dir):
        raise ValueError(f"`resume`: {run.path} has no interrupted training to continue (it finished).")
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(options.precision)  # every layer built below computes in this dtype
    try:
        seconds, averaged = _fit(task, run, options)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if options.precision != "float32":
        # The run's model.keras computes in float32 from here on (translate, export): same weights.
        run.save_model(set_dtype_policy(run.load_model(), "float32"))

    results = task.evaluate(run.load_model(compile=False), run)
    results["train_seconds"] = round(seconds, 1)
    if averaged:
        results["averaged"] = averaged
    run.write_json(run.evaluation_file, results)
    calibration = task.calibration_sentences()
    if calibration:
        run.write_calibration(calibration)
    _print_summary(task, run, results, seconds)
    return results


def _fit(task, run, options):
    task.prepare(run, resume=options.resume)
    model = task.build_model()
    if options.average_last and not task.scored:
        raise ValueError("`average_last` needs a validation set (`val_src`/`val_tgt` or `val_tsv`) to compare with.")
    model_config = json.loads(json.dumps(task.model_config(model)))
    if options.resume and run.read_json(run.config_file)["model"] != model_config:
        raise ValueError(f"`resume`: the model options differ from the run's {run.file(run.config_file)}.")
    training = {**dataclasses.asdict(task.options), **dataclasses.asdict(options), "task": task.name}
    run.write_json(run.config_file, {"model": model_config, "training": training, "task": task.config})
    print(f"Run directory: {run.path}\nTask: {task.description}\nModel: {task.options.preset} preset, {describe(model)}")
    monitor, mode = task.monitor
    callbacks = [
        keras.callbacks.BackupAndRestore(run.checkpoint_dir),
        *task.callbacks(model),  # adds validation scores to the logs below
        keras.callbacks.ModelCheckpoint(run.file(run.model_file), monitor=monitor, mode=mode, save_best_only=True),
        keras.callbacks.CSVLogger(run.file(run.history_file), append=options.resume),
    ]
    if options.time_limit:
        callbacks.insert(0, kt_callbacks.TimeLimit(options.time_limit))
    if options.average_last:
        epoch_weights = kt_callbacks.EpochWeights(run.epoch_weights_dir, keep=options.average_last)
        callbacks.append(epoch_weights)
    start = time.time()
    model.fit(epochs=task.options.epochs, callbacks=callbacks, verbose=options.verbose, **task.fit_arguments())
    seconds = time.time() - start
    averaged = _keep_better_average(run, task, model, epoch_weights.paths()) if options.average_last else None
    return seconds, averaged


def _keep_better_average(run, task, model, paths):
    """Average the weight files at `paths` into `model`; save it if it beats the best epoch's model."""
    _, mode = task.monitor
    best_score = task.score(run.load_model(compile=False))
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
