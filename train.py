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
"""

import argparse
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.models.presets import PRESETS  # noqa: E402
from keras_transformer.run_directory import RunDirectory  # noqa: E402

EPOCH_WEIGHTS_DIR = "epoch_weights"
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
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--task",
        default="translate",
        choices=["translate", "classify", "tag", "lm", "pretrain-mlm"],
        help="translate (encoder-decoder), classify / tag (encoder-only), lm (decoder-only), pretrain-mlm",
    )
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
    model.add_argument("--max-length", type=int, default=64, help="most tokens per sentence (longer: truncated)")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=10)
    training.add_argument("--batch-size", type=int, default=64, help="sentences (or tokens) per batch")
    training.add_argument("--batch-by", choices=["sentences", "tokens"], default="sentences")
    training.add_argument("--warmup-steps", type=int, default=1000, help="4000 in the paper")
    training.add_argument("--learning-rate-scale", type=float, default=2.0, help="factor on the paper's schedule")
    training.add_argument("--label-smoothing", type=float, default=0.1, help="eps_ls")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument(
        "--learning-rate", type=float, help="classify/tag/lm/pretrain-mlm: peak Adam learning rate (default by task)"
    )
    training.add_argument(
        "--average-last",
        type=int,
        metavar="N",
        help="translate: average the weights of the last N epochs (the paper: 5) and keep the average "
        "if it scores better on the validation set than the best epoch",
    )
    training.add_argument(
        "--time-limit", type=float, help="minutes of training at most: the epoch in progress ends early and is scored"
    )
    training.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        default="float32",
        help="compute dtype while training (variables, loss and softmax stay float32); the saved model "
        "computes in float32",
    )

    data = parser.add_argument_group("data: parallel text (without it, the built-in synthetic task)")
    data.add_argument("--train-src", help="training source sentences, one per line (plain or .gz)")
    data.add_argument("--train-tgt", help="training target sentences, aligned with --train-src")
    data.add_argument("--train-tsv", help="source<TAB>target lines (translate), text<TAB>label lines (classify)")
    data.add_argument("--val-src", help="validation source sentences")
    data.add_argument("--val-tgt", help="validation target sentences")
    data.add_argument("--val-tsv", help="validation lines, as --train-tsv (classify default: 10%% of it)")
    data.add_argument("--tokenizer", choices=["sentencepiece", "wordpiece"], default="sentencepiece")
    data.add_argument("--vocab-size", type=int, default=8000, help="subword vocabulary size (per side)")
    data.add_argument("--joint-vocabulary", action="store_true", help="one tokenizer for source and target")
    data.add_argument("--max-line-chars", type=int, default=1000, help="longer lines are skipped (counted)")
    data.add_argument("--train-examples", type=int, help="built-in task: training sentences (default by task)")
    data.add_argument("--val-examples", type=int, help="built-in task: validation sentences (default by task)")

    family = parser.add_argument_group("classify, tag, lm, pretrain-mlm (see --task)")
    family.add_argument("--train-conll", help="tag: token<TAB>tag lines, a blank line between sentences")
    family.add_argument("--val-conll", help="tag: validation sentences (default: 10%% of --train-conll)")
    family.add_argument("--train-text", help="lm, pretrain-mlm: plain text, one example per line")
    family.add_argument("--val-text", help="lm, pretrain-mlm: validation lines (default: 5%% of --train-text)")
    family.add_argument("--init-from", help="classify, tag: start from this run's encoder (and tokenizer)")
    family.add_argument(
        "--freeze-layers", type=int, help="classify, tag: freeze the embedding and the lowest K layers (-1: all)"
    )
    family.add_argument("--pooling", choices=["first", "mean"], default="mean", help="classify: sentence vector")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="runs", help="parent of run directories")
    output.add_argument("--name", help="run name (default: <task>-<preset>-<time>)")
    output.add_argument(
        "--resume", action="store_true", help="continue the interrupted run --name from its last finished epoch"
    )
    output.add_argument(
        "--export",
        default="default",
        help="formats exported at the end: comma-separated names from python -m export, default "
        "(saved_model, tflite, tflite_float16, tflite_dynamic_int8) or all",
    )
    output.add_argument("--no-export", action="store_true", help="skip the export")
    output.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")
    args = parser.parse_args(argv)
    if args.resume and not args.name:
        parser.error("--resume needs the --name of the run to continue")
    check_task_arguments(parser, args)
    args.text = bool(args.train_src or args.train_tgt or args.train_tsv)
    if args.text and not (args.train_tsv or (args.train_src and args.train_tgt)):
        parser.error("give both --train-src and --train-tgt, or --train-tsv")
    if not args.text and (args.val_src or args.val_tgt or args.val_tsv):
        parser.error("validation files need training files (--train-src/--train-tgt or --train-tsv)")
    return args


def check_task_arguments(parser, args):
    """Reject flags that belong to another task."""
    allowed = {
        "translate": {"train_src", "train_tgt", "train_tsv", "val_src", "val_tgt", "val_tsv"},
        "classify": {"train_tsv", "val_tsv", "init_from", "freeze_layers"},
        "tag": {"train_conll", "val_conll", "init_from", "freeze_layers"},
        "lm": {"train_text", "val_text"},
        "pretrain-mlm": {"train_text", "val_text"},
    }
    task_flags = set().union(*allowed.values())
    wrong = sorted(name for name in task_flags - allowed[args.task] if getattr(args, name) is not None)
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        parser.error(f"--task {args.task} does not take {flags}")
    if args.task != "translate":
        if args.val_tsv and not args.train_tsv or args.val_text and not args.train_text:
            parser.error("validation files need training files")
        if args.freeze_layers is not None and not args.init_from:
            parser.error("--freeze-layers needs --init-from (a pre-trained encoder to freeze)")
        if args.average_last is not None:
            parser.error("--average-last is for --task translate")
    if args.average_last is not None and args.average_last < 1:
        parser.error("--average-last needs a positive number of epochs")


def model_config(args, source_vocabulary_size, target_vocabulary_size):
    config = dict(PRESETS[args.preset])
    for name in MODEL_ARGUMENTS:
        value = getattr(args, name)
        if value is not None and not (isinstance(value, bool) and not value):
            config[name] = value
    config["max_sequence_length"] = args.max_length
    config["source_vocabulary_size"] = source_vocabulary_size
    config["target_vocabulary_size"] = target_vocabulary_size
    return config


def synthetic_task(args, run):
    """The built-in task as arrays; evaluated by teacher-forced accuracy."""
    task = kt.data.SyntheticTranslationTask()
    train_x, train_y = task.dataset(args.train_examples or 20000, seed=args.seed + 1)
    val_x, val_y = task.dataset(args.val_examples or 1000, seed=args.seed + 2)
    if max(train_x["encoder_token_ids"].shape[1], train_y.shape[1]) > args.max_length:
        raise ValueError(f"--max-length {args.max_length} is shorter than the synthetic sentences.")

    # Whole-word vocabularies as tokenizers, so the run translates text and exports like a text run.
    from keras_transformer.data.tokenizers import WordPieceTokenizer, save_tokenizers
    from keras_transformer.translator import TOKENIZER_DIR

    save_tokenizers(
        run.file(TOKENIZER_DIR), WordPieceTokenizer(task.source_vocabulary), WordPieceTokenizer(task.target_vocabulary)
    )

    def evaluate(model):
        logits = model.predict(val_x, batch_size=args.batch_size, verbose=0)
        real = val_y != kt.PAD_ID
        correct = (np.argmax(logits, -1) == val_y) & real
        return {
            "cross_entropy": float(kt.losses.MaskedSparseCategoricalCrossentropy()(val_y, logits)),
            "token_accuracy": float(correct.sum() / real.sum()),
            "sentence_accuracy": float(np.mean(correct.sum(1) == real.sum(1))),
        }

    return types.SimpleNamespace(
        description=(
            f"synthetic translation, {len(train_y)} training / {len(val_y)} validation sentences"
        ),
        config={"name": "synthetic", **task.config()},
        vocabulary_sizes=(task.source_vocabulary_size, task.target_vocabulary_size),
        fit_kwargs=dict(x=train_x, y=train_y, batch_size=args.batch_size, validation_data=(val_x, val_y)),
        make_callbacks=lambda model: [],
        monitor=("val_loss", "min"),
        evaluate=evaluate,
        score=(lambda model: evaluate(model)["cross_entropy"], "min"),
    )


def text_task(args, run):
    """Parallel text: read, tokenize (trained here, reloaded on resume), tf.data."""
    from keras_transformer.data.pipeline import make_dataset
    from keras_transformer.data.readers import read_parallel
    from keras_transformer.data.tokenizers import load_tokenizers, save_tokenizers, train_tokenizer
    from keras_transformer.evaluation import BleuCallback, corpus_scores
    from keras_transformer.translator import TOKENIZER_DIR, Translator

    train_src, train_tgt, report = read_parallel(args.train_src, args.train_tgt, args.train_tsv, args.max_line_chars)
    reports = [report.summary()]
    val_src = val_tgt = None
    if args.val_src or args.val_tgt or args.val_tsv:
        val_src, val_tgt, val_report = read_parallel(args.val_src, args.val_tgt, args.val_tsv, args.max_line_chars)
        reports.append(val_report.summary())
    print("\n".join(reports))

    tokenizer_dir = run.file(TOKENIZER_DIR)
    if args.resume and os.path.isdir(tokenizer_dir):
        source_tokenizer, target_tokenizer = load_tokenizers(tokenizer_dir)
    else:
        start = time.time()
        if args.joint_vocabulary:
            source_tokenizer = target_tokenizer = train_tokenizer(args.tokenizer, train_src + train_tgt, args.vocab_size)
        else:
            source_tokenizer = train_tokenizer(args.tokenizer, train_src, args.vocab_size)
            target_tokenizer = train_tokenizer(args.tokenizer, train_tgt, args.vocab_size)
        save_tokenizers(tokenizer_dir, source_tokenizer, target_tokenizer)
        print(
            f"Tokenizers ({args.tokenizer}): {source_tokenizer.vocabulary_size} source / "
            f"{target_tokenizer.vocabulary_size} target subwords, {time.time() - start:.0f} s"
        )

    def dataset(sources, targets, shuffle):
        return make_dataset(
            sources, targets, source_tokenizer, target_tokenizer, args.max_length, args.batch_size,
            batch_by=args.batch_by, shuffle=shuffle, seed=args.seed, count_batches=True,
        )  # fmt: skip

    def make_callbacks(model):
        if val_src is None:
            return []
        translator = Translator(model, source_tokenizer, target_tokenizer)
        return [BleuCallback(translator, val_src, val_tgt)]

    def evaluate(model):
        if val_src is None:
            return {}
        translator = Translator(model, source_tokenizer, target_tokenizer)
        hypotheses = translator.translate(val_src)
        kt.run_directory.write_text(run.file("hypotheses.txt"), "".join(h + "\n" for h in hypotheses))
        return corpus_scores(hypotheses, val_tgt)

    def score(model):  # what BleuCallback logs as val_bleu
        translator = Translator(model, source_tokenizer, target_tokenizer)
        return corpus_scores(translator.translate(val_src), val_tgt)["bleu"]

    return types.SimpleNamespace(
        description=f"parallel text, {len(train_src)} training / {len(val_src or [])} validation pairs",
        config={
            "name": "text",
            "train": [args.train_src, args.train_tgt, args.train_tsv],
            "validation": [args.val_src, args.val_tgt, args.val_tsv],
            "tokenizer": args.tokenizer,
            "joint_vocabulary": args.joint_vocabulary,
            "read": reports,
        },
        vocabulary_sizes=(source_tokenizer.vocabulary_size, target_tokenizer.vocabulary_size),
        fit_kwargs=dict(
            x=dataset(train_src, train_tgt, shuffle=True),
            shuffle=False,  # the dataset shuffles itself, anew each epoch
            validation_data=None if val_src is None else dataset(val_src, val_tgt, shuffle=False),
        ),
        make_callbacks=make_callbacks,
        monitor=("val_bleu", "max") if val_src is not None else ("loss", "min"),
        evaluate=evaluate,
        score=(score, "max") if val_src is not None else None,
    )


def translation_model(args, run):
    """The translate task and its compiled `Transformer`."""
    task = (text_task if args.text else synthetic_task)(args, run)
    config = model_config(args, *task.vocabulary_sizes)
    model = kt.Transformer(**config)
    schedule = kt.schedules.TransformerSchedule(config["hidden_dim"], args.warmup_steps, args.learning_rate_scale)
    model.compile(
        optimizer=kt.optimizers.transformer_adam(config["hidden_dim"], learning_rate=schedule),
        label_smoothing=args.label_smoothing,
    )
    task.model_config = config
    task.description += f", vocabularies {task.vocabulary_sizes[0]} / {task.vocabulary_sizes[1]}"
    return task, model


def family_model(args, run):
    """A classify / tag / lm / pretrain-mlm task and its compiled model (`keras_transformer.tasks`)."""
    from keras_transformer.tasks import TASKS

    task = TASKS[args.task](args, run)
    return task, task.model


def describe(model):
    """One line on the architecture of `model` (any family)."""
    body = getattr(model, "backbone", model)
    return (
        f"{type(model).__name__}, N={body.num_layers} layers, d_model {body.hidden_dim}, {body.num_heads} heads, "
        f"d_ff {body.intermediate_dim}, {body.position} positions, {model.count_params():,} parameters"
    )


def main(argv=None):
    args = parse_args(argv)
    export_to = export_formats(args)
    keras.utils.set_random_seed(args.seed)
    kind = ("text" if args.text else "synthetic") if args.task == "translate" else args.task
    name = args.name or f"{kind}-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDirectory(os.path.join(args.out, name), create=True, exist_ok=args.resume)
    if args.resume and not os.path.isdir(run.checkpoint_dir):
        raise ValueError(f"--resume: {run.path} has no interrupted training to continue (it finished).")

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.precision)  # every layer built below computes in this dtype
    try:
        task, seconds, averaged = train(args, run)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if args.precision != "float32":
        # The run's model.keras computes in float32 from here on (translate, export): same weights.
        run.save_model(kt.models.set_dtype_policy(run.load_model(), "float32"))

    monitor, _ = task.monitor
    results = task.evaluate(run.load_model(compile=False))
    results["train_seconds"] = round(seconds, 1)
    if averaged:
        results["averaged"] = averaged
    run.write_json("evaluation.json", results)
    formats = {
        "bleu": "BLEU {:.2f}",
        "bleu_lowercase": "lowercased BLEU {:.2f}",
        "chrf": "chrF {:.2f}",
        "cross_entropy": "cross-entropy {:.4f}",
        "perplexity": "perplexity {:.2f}",
    }
    summary = ", ".join(
        formats.get(key, key.replace("_", " ") + " {:.2%}").format(value)
        for key, value in results.items()
        if isinstance(value, float) and key != "train_seconds"
    )
    print(
        f"\nValidation, best epoch by {monitor}: {summary or 'no validation set'}\n"
        f"Training time: {seconds:.0f} s. Model: {run.file('model.keras')}"
    )
    for key, title in (("samples", "Sampled texts"), ("samples_top_p", "Sampled texts, top-p 0.9")):
        if results.get(key):
            print(f"{title}:\n" + "\n".join(f"  {text}" for text in results[key]))
    if export_to:
        from export import export_run

        results["export"] = export_run(run.path, export_to)
    return results


def train(args, run):
    """Build the task's model and fit it (with averaging if asked): `(task, seconds, averaged)`."""
    task, model = (translation_model if args.task == "translate" else family_model)(args, run)
    if args.average_last and task.score is None:
        raise ValueError("--average-last needs a validation set (--val-src/--val-tgt or --val-tsv) to compare with.")
    config = json.loads(json.dumps(task.model_config))
    if args.resume and run.read_json("config.json")["model"] != config:
        raise ValueError(f"--resume: the model flags differ from the run's {run.file('config.json')}.")
    run.write_json("config.json", {"model": config, "training": vars(args), "task": task.config})
    print(f"Run directory: {run.path}\nTask: {task.description}\nModel: {args.preset} preset, {describe(model)}")
    monitor, mode = task.monitor
    callbacks = [
        keras.callbacks.BackupAndRestore(run.checkpoint_dir),
        *task.make_callbacks(model),  # adds validation scores to the logs below
        keras.callbacks.ModelCheckpoint(run.file("model.keras"), monitor=monitor, mode=mode, save_best_only=True),
        keras.callbacks.CSVLogger(run.file("history.csv"), append=args.resume),
    ]
    if args.time_limit:
        callbacks.insert(0, kt.callbacks.TimeLimit(args.time_limit))
    if args.average_last:
        epoch_weights = kt.callbacks.EpochWeights(run.file(EPOCH_WEIGHTS_DIR), keep=args.average_last)
        callbacks.append(epoch_weights)
    start = time.time()
    model.fit(epochs=args.epochs, callbacks=callbacks, verbose=args.verbose, **task.fit_kwargs)
    seconds = time.time() - start
    averaged = keep_better_average(run, task, model, epoch_weights.paths()) if args.average_last else None
    return task, seconds, averaged


def keep_better_average(run, task, model, paths):
    """Average the weight files at `paths` into `model`; save it if it beats the best epoch's model."""
    score, mode = task.score
    best_score = score(run.load_model(compile=False))
    kt.callbacks.average_weights(model, paths)
    averaged_score = score(model)
    better = averaged_score > best_score if mode == "max" else averaged_score < best_score
    if better:
        run.save_model(model)
    epochs = [int(os.path.basename(path)[6:-4]) for path in paths]
    print(
        f"Average of epochs {epochs[0]}-{epochs[-1]}: {averaged_score:.4g} against the best epoch's {best_score:.4g} "
        f"({'keeping the average' if better else 'keeping the best epoch'})"
    )
    return {"epochs": epochs, "score": averaged_score, "best_epoch_score": best_score, "kept_average": better}


def export_formats(args):
    """The formats to export at the end (checked before training starts)."""
    if args.no_export or args.task == "pretrain-mlm":  # a pre-trained encoder is fine-tuned, not served
        return []
    from export import FORMATS
    from export.__main__ import ALL_FORMATS, DEFAULT_FORMATS
    from export.families import FAMILY_FORMATS

    if args.task != "translate":
        known = FAMILY_FORMATS
        named = {"default": list(FAMILY_FORMATS), "all": list(FAMILY_FORMATS)}
    else:
        known, named = sorted(FORMATS), {"default": list(DEFAULT_FORMATS), "all": list(ALL_FORMATS)}
    formats = [name.strip() for name in args.export.split(",") if name.strip()]
    formats = named.get(",".join(formats), formats)
    unknown = sorted(set(formats) - set(known))
    if unknown or not formats:
        raise ValueError(
            f"--export: unknown format(s) {unknown} for --task {args.task}. Expected default, all or some of "
            f"{sorted(known)}."
        )
    return formats


def cli(argv=None):
    try:
        main(argv)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
