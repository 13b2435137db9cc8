"""Train a Transformer and write a run directory.

With no arguments: trains the "tiny" preset on the built-in synthetic
translation task (no files, no download). With parallel text: trains
subword tokenizers on it, trains the model, logs validation BLEU and chrF
each epoch, keeps the best model and writes the validation translations.
`--task` picks another family, each with a built-in generated data set:
sentence classification, tagging, language modelling, masked-LM
pre-training (then `--init-from` that run to fine-tune a classifier or
tagger, `--freeze-layers K` to freeze its lowest layers).

    python train.py
    python train.py --train-src train.en.gz --train-tgt train.de.gz \\
        --val-src val.en.gz --val-tgt val.de.gz --preset small --epochs 10
    python train.py --task classify               # or tag, lm, pretrain-mlm
    python train.py --task pretrain-mlm --name mlm
    python train.py --task classify --init-from runs/mlm --freeze-layers 1
    python train.py --task classify --train-tsv reviews.tsv   # text<TAB>label lines
    python train.py --name my-run --resume        # continue an interrupted run
    python train.py --config runs/my-run/config.json --name my-run-2 --seed 1   # its settings, one changed

Installed (`pip install .`), the same command is `kt-train`.
"""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import keras

from keras_transformer import commands, quiet

from keras_transformer.distribution import worker_role
from keras_transformer.models.presets import PRESETS
from keras_transformer.run_checkpoint import training_status
from keras_transformer.run_directory import RunDirectory, disk_full_message, is_disk_full
from keras_transformer.tasks import TASKS
from keras_transformer.tasks.trainer import PRECISIONS, TrainingOptions, open_run, release_run, train

CLI_ONLY = {"task", "out", "name", "export", "no_export", "config"}
FLAGS = {  # group: [(flag, argparse keywords)]
    "model (a preset, then overrides; paper symbols in brackets)": [
        ("--preset", dict(default="tiny", choices=sorted(PRESETS), help="model size")),
        ("--num-layers", dict(type=int, help="N, layers per stack")),
        ("--hidden-dim", dict(type=int, help="d_model")),
        ("--num-heads", dict(type=int, help="h")),
        ("--intermediate-dim", dict(type=int, help="d_ff")),
        ("--dropout", dict(type=commands.finite_float, help="P_drop: on embeddings and every sub-block's output (residual)")),
        ("--attention-dropout", dict(type=commands.finite_float, help="on the attention weights (default: 0, as the paper)")),
        ("--activation-dropout", dict(type=commands.finite_float, help="on the feed-forward's inner activations (default: 0, "
                                      "as the paper)")),
        ("--position", dict(choices=["sinusoidal", "learned", "relative", "rotary"], default="sinusoidal",
                             help="position encoding")),
        ("--normalize-first", dict(action="store_true", help="pre-norm instead of post-norm")),
        ("--tie-embeddings", dict(action="store_true", help="translate: tie target embedding and output layer")),
        ("--share-embeddings", dict(action="store_true", help="translate: one embedding for source and target")),
        ("--max-length", dict(type=int, default=64, help="most tokens per sentence (longer: truncated)")),
    ],
    "training": [
        ("--epochs", dict(type=int, default=10, help="passes over the training data")),
        ("--batch-size", dict(type=int, default=64, help="sentences (or tokens) per batch")),
        ("--steps-per-epoch", dict(type=int, metavar="N", help="translate, parallel text: an epoch is N batches "
                                   "of the repeated stream (default: one pass over the training files)")),
        ("--shuffle-buffer", dict(type=int, default=100_000, metavar="PAIRS", help="translate, parallel text: "
                                  "sentence pairs held to shuffle the streamed training files (memory grows with it)")),
        ("--accumulate-steps", dict(type=int, default=1, metavar="K", help="update the weights once every K "
                                    "batches with their averaged gradients: batches of K x --batch-size in the memory "
                                    "of one; the warm-up counts updates")),
        ("--batch-by", dict(choices=["sentences", "tokens"], default="sentences", help="translate")),
        ("--warmup-steps", dict(type=int, default=1000, help="4000 in the paper")),
        ("--learning-rate-scale", dict(type=commands.finite_float, default=2.0, help="translate: factor on the paper's schedule")),
        ("--label-smoothing", dict(type=commands.finite_float, default=0.1, help="eps_ls")),
        ("--seed", dict(type=int, default=0, help="random seed (weights, shuffling, data)")),
        ("--learning-rate", dict(type=commands.finite_float, help="classify/tag/lm/pretrain-mlm: peak Adam rate "
                                 "(default by task; 5e-5 from an imported checkpoint's run)")),
        ("--average-last", dict(type=int, metavar="N", help="translate: average the weights of the last N epochs "
                                "(the paper: 5), kept if better on the validation set than the best epoch")),
        ("--time-limit", dict(type=commands.finite_float, help="minutes of training at most: the epoch in progress ends early")),
        ("--cooldown", dict(type=commands.finite_float, metavar="FRACTION", help="let the learning rate fall linearly to zero over "
                            "the last FRACTION of the run (of --time-limit when given, else of --epochs)")),
        ("--early-stopping", dict(type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without a "
                                  "better validation score (BLEU for text, else the loss)")),
        ("--distribute", dict(choices=["none", "mirrored", "multi-worker"], default="none", help="mirrored: "
                              "data-parallel over the local devices (tf.distribute.MirroredStrategy on TensorFlow, "
                              "keras.distribution.DataParallel on JAX); multi-worker: over the machines that "
                              "TF_CONFIG lists (tf.distribute.MultiWorkerMirroredStrategy; the same command on each, "
                              "the chief writes the run); --batch-size is the global batch")),
        ("--cpu-devices", dict(type=int, metavar="N", help="split the CPU into N logical devices (--distribute "
                               "without a GPU; on JAX also set XLA_FLAGS=--xla_force_host_platform_device_count=N)")),
        ("--precision", dict(choices=PRECISIONS, default="float32", help="compute dtype while training (variables, "
                             "loss and softmax stay float32); the saved model computes in float32")),
    ],
    "data: parallel text (without it, the built-in synthetic task)": [
        ("--train-src", dict(help="training source sentences, one per line (plain or .gz)")),
        ("--train-tgt", dict(help="training target sentences, aligned with --train-src")),
        ("--train-tsv", dict(help="source<TAB>target lines (translate), text<TAB>label lines (classify)")),
        ("--val-src", dict(help="validation source sentences")),
        ("--val-tgt", dict(help="validation target sentences")),
        ("--val-tsv", dict(help="validation lines, as --train-tsv (classify default: 10%% of it)")),
        ("--tokenizer", dict(choices=["sentencepiece", "wordpiece"], help="the subword model a task trains on "
                              "your text (default: sentencepiece)")),
        ("--vocab-size", dict(type=int, default=8000, help="subword vocabulary size (per side)")),
        ("--joint-vocabulary", dict(action="store_true", help="translate: one tokenizer for source and target")),
        ("--marian-compatible", dict(action="store_true", help="translate: a run `export --format marian` hands "
                                     "to transformers and CTranslate2 as the same model (sources end with the end "
                                     "token, the decoder starts from a zero embedding; needs SentencePiece and "
                                     "--joint-vocabulary)")),
        ("--tokenizer-sample", dict(type=int, metavar="N", help="train the subword tokenizer on at most N lines "
                                    "per side, a seeded random sample (default: 1000000)")),
        ("--val-bleu-sentences", dict(type=int, default=1000, metavar="N", help="translate: BLEU each epoch on N "
                                      "validation sentences spread over the set; the final evaluation scores all")),
        ("--max-line-chars", dict(type=int, default=1000, help="longer lines are skipped (counted)")),
        ("--train-examples", dict(type=int, help="built-in task: training sentences (default by task)")),
        ("--val-examples", dict(type=int, help="built-in task: validation sentences (default by task)")),
    ],
    "classify, tag, lm, pretrain-mlm (see --task)": [
        ("--train-conll", dict(help="tag: token<TAB>tag lines, a blank line between sentences")),
        ("--val-conll", dict(help="tag: validation sentences (default: 10%% of --train-conll)")),
        ("--train-text", dict(help="lm, pretrain-mlm: plain text, one example per line")),
        ("--val-text", dict(help="lm, pretrain-mlm: validation lines (default: 5%% of --train-text)")),
        ("--init-from", dict(help="classify, tag: start from this run's encoder (and tokenizer; a classify or tag "
                             "run's head too when its labels cover the data's); translate, lm, pretrain-mlm: "
                             "continue or fine-tune this run (its model and tokenizers) on new text")),
        ("--freeze-layers", dict(type=int, help="classify, tag, lm, pretrain-mlm: freeze the embedding and the lowest "
                                 "K layers (-1: all)")),
        ("--pooling", dict(choices=["first", "mean", "pooler"], help="classify: sentence vector (default: pooler "
                           "for an encoder that has one, as an imported BERT; else mean)")),
    ],
    "output": [
        ("--out", dict(default="runs", help="parent of run directories")),
        ("--name", dict(help="run name (default: <task>-<preset>-<time>)")),
        ("--resume", dict(action="store_true", help="continue the interrupted run --name from its last epoch")),
        ("--export", dict(default="default", help="formats exported at the end: comma-separated names from "
                          f"{commands.name('export')}, default or all")),
        ("--no-export", dict(action="store_true", help="skip the export")),
        ("--verbose", dict(type=int, default=1, choices=[0, 1, 2], help="Keras progress output")),
        ("--tensorboard", dict(action=argparse.BooleanOptionalAction, default=True, help="log scalars and "
                               "attention pictures to <run>/tensorboard (tensorboard --logdir runs)")),
    ],
}


NOT_FROM_CONFIG = {"config", "resume", "name", "help"}  # what identifies one run, not its settings


def read_config(path, parser):
    """Flag values from a JSON or YAML file: `{"preset": "small", "epochs": 12, ...}`.

    A run's `config.json` is read through its `training` section (every
    option the run was trained with). Keys are flag names with `-` or `_`;
    an unknown key is an error naming it.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # JSONDecodeError, yaml.YAMLError
        raise ValueError(f"--config {path} is not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'}: {error}") from None
    run_config = isinstance(values, dict) and isinstance(values.get("training"), dict) and "model" in values
    if run_config:
        values = values["training"]  # a run's config.json: its record of `resume` is not a setting to reuse
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold a mapping of flag names to values.")
    actions = {action.dest: action for action in parser._actions}
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(key for key in values if key not in actions or key == "help")
    if unknown:
        raise ValueError(f"--config {path}: unknown setting(s) {', '.join(unknown)} (expected flag names).")
    refused = sorted(key for key in values if key in NOT_FROM_CONFIG and not run_config)
    if refused:
        raise ValueError(
            f"--config {path}: {', '.join(refused)} cannot come from a settings file (which run to write and whether "
            "to resume it are given on the command line: --name, --resume)"
        )
    return {key: _config_value(path, actions[key], value) for key, value in values.items() if key not in NOT_FROM_CONFIG}


def _config_value(path, action, value):
    """A settings file's `value` for `action`, through the flag's own type and choices (as if typed)."""
    flag = action.option_strings[0]
    if value is None:
        return action.default
    if action.nargs == 0:  # a switch: true or false, not a string that merely looks like one
        if not isinstance(value, bool):
            raise ValueError(f"--config {path}: {flag} is a switch: give true or false. Received: {value!r}")
        return value
    if isinstance(value, (bool, dict, list)):
        raise ValueError(f"--config {path}: {flag} takes one value. Received: {value!r}")
    try:
        converted = action.type(str(value)) if action.type else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        raise ValueError(f"--config {path}: {flag}: {error or 'invalid value'}. Received: {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(
            f"--config {path}: {flag} must be one of {', '.join(map(str, action.choices))}. Received: {value!r}"
        )
    return converted


def parse_args(argv=None):
    """`(args, task options, training options)`; bad or misplaced flags exit with a usage error."""
    parser = argparse.ArgumentParser(description=commands.named(__doc__), formatter_class=commands.HelpFormatter)
    parser.add_argument("--config", help="a JSON or YAML file of flag values (keys as the flags, - or _), or a run's "
                        "config.json; flags on the command line override it")  # fmt: skip
    parser.add_argument("--task", default="translate", choices=list(TASKS),
                        help="translate (encoder-decoder), classify / tag (encoder-only), lm (decoder-only), "
                        "pretrain-mlm")  # fmt: skip
    for title, flags in FLAGS.items():
        group = parser.add_argument_group(title)
        for flag, kwargs in flags:
            group.add_argument(flag, **kwargs)
    args = parser.parse_args(argv)
    flag_defaults = {action.dest: action.default for action in parser._actions}
    if args.config:
        try:
            parser.set_defaults(**read_config(args.config, parser))
        except (OSError, ValueError) as error:
            parser.error(str(error))
        args = parser.parse_args(argv)  # the command line over the file
    if args.resume and not args.name:
        parser.error("--resume needs the --name of the run to continue")
    task = TASKS[args.task]
    if args.average_last is not None and args.task != "translate":
        parser.error("--average-last is for --task translate")
    fields = {f.name for f in dataclasses.fields(task.options_class)}
    training_fields = {f.name for f in dataclasses.fields(TrainingOptions)}
    ignored = sorted(name for name, value in vars(args).items()
                     if name not in fields | training_fields | CLI_ONLY and value != flag_defaults[name])  # fmt: skip
    if ignored:
        parser.error(f"--task {args.task} does not take {', '.join('--' + n.replace('_', '-') for n in ignored)}")
    try:
        options = task.options_class(**{name: getattr(args, name) for name in fields})
        training = TrainingOptions(**{name: getattr(args, name) for name in training_fields})
    except ValueError as error:
        parser.error(as_flags(error))
    return args, options, training


def as_flags(error):
    """The library names options `like_this` in messages; the command line calls them --like-this."""
    flags = {flag[2:].replace("-", "_") for group in FLAGS.values() for flag, _ in group}
    return re.sub(r"`([a-z_]+)`", lambda m: "--" + m[1].replace("_", "-") if m[1] in flags else m[0], str(error))


def _exporters():
    """The export package: `keras_transformer.export` once installed (`pip install .` or `-e .`), else a
    checkout's top-level `export/` (next to `train.py`, on the path when `python train.py` runs)."""
    try:
        from keras_transformer import export
    except ImportError:
        import export
    return export


def export_formats(args):
    """The formats to export at the end (checked before training starts)."""
    if args.no_export or not TASKS[args.task].exported:
        return []
    return _exporters().formats_for(TASKS[args.task].family, args.export, what="--export")


def export(run_path, formats, family):
    """Export the finished run; `{format: path}`.

    SavedModel and TFLite are TensorFlow graphs. A run trained on another
    backend (`KERAS_BACKEND=jax`) is a backend-neutral `model.keras`, so a
    TensorFlow process (`python -m export`) exports it.
    """
    exporters = _exporters()
    if keras.backend.backend() == "tensorflow":
        return exporters.export_run(run_path, formats)
    print(f"Export: the model was trained on {keras.backend.backend()}; exporting it in a TensorFlow process.")
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(exporters.__file__)))
    environment = dict(os.environ, KERAS_BACKEND="tensorflow")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", exporters.__name__, "--model", run_path] + [f"--format={name}" for name in formats]
    if subprocess.run(command, env=environment).returncode:
        raise OSError(
            f"the export failed (see above); the trained run {run_path} is complete: export it again with "
            f"KERAS_BACKEND=tensorflow {commands.name('export')} --model {run_path}"
        )
    options, out = exporters.ExportOptions(), RunDirectory(run_path).export_dir
    return {name: exporters.EXPORTERS[(family, name)](options).target(out) for name in formats}


def main(argv=None):
    args, options, training = parse_args(argv)
    formats = export_formats(args)
    keras.utils.set_random_seed(options.seed)
    kind = ("text" if options.text else "synthetic") if args.task == "translate" else args.task
    name = args.name or f"{kind}-{options.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.basename(name) != name or name in (".", "..") or os.path.isabs(name):
        raise ValueError(f"--name must be a plain name (a folder inside --out). Received: {name!r}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file, not a directory.")
    task = TASKS[args.task](options)  # checks what the options mean together, before anything is written
    role = worker_role(training.distribute)
    if role is not None:
        print(f"Worker: {role}")
        if args.name is None:
            raise ValueError("--distribute multi-worker needs a --name, the same on every worker.")
    run = open_run(os.path.join(args.out, name), resume=args.resume, distribute=training.distribute)
    try:
        results = train(task, run, training)
        if role is not None and not role.chief:
            return results
        if formats:
            results["export"] = export(run.path, formats, TASKS[args.task].family)
        return results
    except Exception as error:
        if not is_disk_full(error):
            raise
        raise OSError(disk_full_message(run.path, _how_to_go_on(run))) from None
    finally:
        release_run(run)


def _how_to_go_on(run):
    """After a full disk: what to run once there is space, by what the run directory holds."""
    status = training_status(run)
    if status == "interrupted":
        return "then run the same command with --resume: it continues after the last finished epoch"
    if status == "finished":
        return f"then export it: {commands.name('export')} --model {run.path}"
    return "then run the same command again (no epoch had finished)"


def cli(argv=None):
    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    try:
        main(argv)
    except (OSError, ValueError) as error:  # a taken name, a missing file, an unwritable --out, bad values
        print(f"train.py: error: {as_flags(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
