"""Train a Transformer and write a run directory.

With no arguments: trains the "tiny" preset on the built-in synthetic
translation task (no files, no download) and writes `runs/<name>/`.

    python train.py
    python train.py --preset small --epochs 20 --name my-run
    python train.py --name my-run --resume        # continue an interrupted run
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.data import SyntheticTranslationTask  # noqa: E402
from keras_transformer.models.presets import PRESETS  # noqa: E402
from keras_transformer.run_directory import RunDirectory  # noqa: E402

MODEL_ARGUMENTS = (
    "num_layers",
    "hidden_dim",
    "num_heads",
    "intermediate_dim",
    "dropout",
    "position",
    "normalize_first",
    "tie_embeddings",
    "share_embeddings",
    "max_sequence_length",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model (a preset, then overrides; paper symbols in brackets)")
    model.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    model.add_argument("--num-layers", type=int, help="N, layers per stack")
    model.add_argument("--hidden-dim", type=int, help="d_model")
    model.add_argument("--num-heads", type=int, help="h")
    model.add_argument("--intermediate-dim", type=int, help="d_ff")
    model.add_argument("--dropout", type=float, help="P_drop")
    model.add_argument("--position", choices=["sinusoidal", "learned", "relative", "rotary"], default="sinusoidal")
    model.add_argument("--normalize-first", action="store_true", help="pre-norm instead of post-norm")
    model.add_argument("--tie-embeddings", action="store_true", help="tie target embedding and output layer")
    model.add_argument("--share-embeddings", action="store_true", help="one embedding for source and target")
    model.add_argument("--max-sequence-length", type=int, default=64)

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=10)
    training.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    training.add_argument("--warmup-steps", type=int, default=1000, help="4000 in the paper")
    training.add_argument("--learning-rate-scale", type=float, default=2.0, help="factor on the paper's schedule")
    training.add_argument("--label-smoothing", type=float, default=0.1, help="eps_ls")
    training.add_argument("--seed", type=int, default=0)

    data = parser.add_argument_group("data: the built-in synthetic translation task")
    data.add_argument("--train-examples", type=int, default=20000)
    data.add_argument("--val-examples", type=int, default=1000)

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="runs", help="parent of run directories")
    output.add_argument("--name", help="run name (default: <task>-<preset>-<time>)")
    output.add_argument(
        "--resume", action="store_true", help="continue the interrupted run --name from its last finished epoch"
    )
    output.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")
    args = parser.parse_args(argv)
    if args.resume and not args.name:
        parser.error("--resume needs the --name of the run to continue")
    return args


def model_config(args, task):
    config = dict(PRESETS[args.preset])
    for name in MODEL_ARGUMENTS:
        value = getattr(args, name)
        if value is not None and not (isinstance(value, bool) and not value):
            config[name] = value
    config["source_vocabulary_size"] = task.source_vocabulary_size
    config["target_vocabulary_size"] = task.target_vocabulary_size
    return config


def evaluate(model, inputs, labels, batch_size):
    """Teacher-forced cross-entropy (no smoothing), token and sentence accuracy."""
    logits = model.predict(inputs, batch_size=batch_size, verbose=0)
    loss = kt.losses.MaskedSparseCategoricalCrossentropy()(labels, logits)
    real = labels != kt.PAD_ID
    correct = (np.argmax(logits, -1) == labels) & real
    return {
        "loss": float(loss),
        "token_accuracy": float(correct.sum() / real.sum()),
        "sentence_accuracy": float(np.mean(correct.sum(1) == real.sum(1))),
    }


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    task = SyntheticTranslationTask()
    name = args.name or f"synthetic-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDirectory(os.path.join(args.out, name), create=True, exist_ok=args.resume)

    config = model_config(args, task)
    if args.resume:
        saved = run.read_json("config.json")
        if saved["model"] != config:
            raise ValueError(f"--resume: the model flags differ from the run's {run.file('config.json')}.")
        if not os.path.isdir(run.checkpoint_dir):
            raise ValueError(f"--resume: {run.path} has no interrupted training to continue (it finished).")
    train_x, train_y = task.dataset(args.train_examples, seed=args.seed + 1)
    val_x, val_y = task.dataset(args.val_examples, seed=args.seed + 2)
    run.write_json(
        "config.json",
        {"model": config, "training": vars(args), "task": {"name": "synthetic", **task.config()}},
    )

    model = kt.Transformer(**config)
    optimizer = kt.optimizers.transformer_adam(
        config["hidden_dim"],
        learning_rate=kt.schedules.TransformerSchedule(
            config["hidden_dim"], args.warmup_steps, scale=args.learning_rate_scale
        ),
    )
    model.compile(optimizer=optimizer, label_smoothing=args.label_smoothing)
    print(
        f"Run directory: {run.path}\n"
        f"Task: synthetic translation, {args.train_examples} training / {args.val_examples} validation "
        f"sentences, vocabularies {task.source_vocabulary_size} / {task.target_vocabulary_size}\n"
        f"Model: {args.preset} preset, N={config['num_layers']} layers, d_model {config['hidden_dim']}, "
        f"{config['num_heads']} heads, d_ff {config['intermediate_dim']}, {config['position']} positions"
    )
    callbacks = [
        keras.callbacks.BackupAndRestore(run.checkpoint_dir),
        keras.callbacks.ModelCheckpoint(run.file("model.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(run.file("history.csv"), append=args.resume),
    ]
    start = time.time()
    model.fit(
        train_x,
        train_y,
        validation_data=(val_x, val_y),
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    seconds = time.time() - start

    best = run.load_model()
    results = evaluate(best, val_x, val_y, args.batch_size)
    results["train_seconds"] = round(seconds, 1)
    run.write_json("evaluation.json", results)
    print(
        f"\nValidation (best epoch, teacher forcing): cross-entropy {results['loss']:.4f}, "
        f"token accuracy {results['token_accuracy']:.2%}, "
        f"sentence accuracy {results['sentence_accuracy']:.2%}\n"
        f"Training time: {seconds:.0f} s. Model: {run.file('model.keras')}"
    )
    return results


def cli(argv=None):
    try:
        main(argv)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
