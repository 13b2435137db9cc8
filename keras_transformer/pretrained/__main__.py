"""python -m keras_transformer.pretrained HF_DIR --out OUT --name NAME

Read a Hugging Face checkpoint directory into the run directory OUT/NAME.
A Marian (OPUS-MT) model becomes a translation run, which translates,
exports and fine-tunes as a trained run does; a GPT-2 model a language-model
run; a BERT model a masked-LM run (`--task pretrain-mlm`, the default) whose
encoder `train.py --task classify|tag --init-from OUT/NAME` fine-tunes, or a
classify or tag run (`--task classify|tag`): a sequence-classification
checkpoint's head and labels are read (such a checkpoint imports as a
classify run by default), any other head is new, for the `--labels` given,
and trained by `train.py --init-from OUT/NAME`:

    python -m keras_transformer.pretrained opus-mt-en-de --out runs --name opus-en-de
    python -m keras_transformer.translate --model runs/opus-en-de <<< "How are you?"
    python -m keras_transformer.pretrained bert-sst2 --out runs --name sst2   # a classify run
"""

import argparse
import sys

from keras_transformer import commands, quiet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=commands.name("import"), description=commands.named(__doc__), formatter_class=commands.HelpFormatter
    )
    parser.add_argument("checkpoint", metavar="HF_DIR", help="a Hugging Face Marian, BERT or GPT-2 checkpoint's folder")
    parser.add_argument("--out", default="runs", help="the folder of runs")
    parser.add_argument("--name", required=True, help="the run's name: a folder inside --out")
    parser.add_argument(
        "--max-length", type=int,
        help="the longest source or target the run takes (default: the checkpoint's max_position_embeddings)",
    )  # fmt: skip
    parser.add_argument(
        "--task", choices=("translate", "lm", "pretrain-mlm", "classify", "tag"),
        help="the run's task (default: the checkpoint's: translate for Marian, lm for GPT-2; for BERT classify when "
        "it has a sequence-classification head, else pretrain-mlm)",
    )  # fmt: skip
    parser.add_argument(
        "--labels", type=label_list, metavar="A,B,...",
        help="a classify or tag run's class or tag names, for a new head (default: config.json's id2label of a "
        "classification checkpoint)",
    )  # fmt: skip
    return parser.parse_args(argv)


def label_list(text):
    """An argparse type: comma-separated names."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"an empty name in {text!r} (names are separated by commas)")
    return names


def main(argv=None):
    from keras_transformer.pretrained import import_checkpoint, read_model_type
    from keras_transformer.run_directory import RunDirectory

    args = parse_args(argv)
    model_type = read_model_type(args.checkpoint)
    path = import_checkpoint(args.checkpoint, args.out, args.name, max_sequence_length=args.max_length,
                             task=args.task, labels=args.labels)  # fmt: skip
    task = RunDirectory(path).read_json(RunDirectory.config_file)["task"]
    if task["family"] in ("classify", "tag"):
        data = "--train-tsv FILE" if task["family"] == "classify" else "--train-conll FILE"
        train = f"{commands.name('train')} --task {task['family']} --init-from {path} {data}"
        if task.get("head") == "imported":
            print(f"Imported {args.checkpoint} as {path} (a classify run: {', '.join(task['labels'])})\n"
                  f"Export:    {commands.name('export')} --model {path} --format default --format tflite_text\n"
                  f"Fine-tune: {train}")  # fmt: skip
        else:
            print(f"Imported {args.checkpoint} as {path} (a {task['family']} run whose head is new: train it)\n"
                  f"Train:     {train} [--freeze-layers K]")  # fmt: skip
    elif model_type == "marian":
        print(f"Imported {args.checkpoint} as {path}\n"
              f"Translate: {commands.name('translate')} --model {path}\n"
              f"Export:    {commands.name('export')} --model {path}")  # fmt: skip
    elif model_type == "gpt2":
        print(f"Imported {args.checkpoint} as {path} (a language-model run)\n"
              f"Fine-tune: {commands.name('train')} --task lm --init-from {path} --train-text FILE\n"
              f"Export:    {commands.name('export')} --model {path}")  # fmt: skip
    else:
        new = ", its head new: the checkpoint has none" if task.get("head") == "new" else ""
        print(f"Imported {args.checkpoint} as {path} (a masked-LM run{new}: fine-tune its encoder)\n"
              f"Classify:  {commands.name('train')} --task classify --init-from {path} --train-tsv FILE\n"
              f"Tag:       {commands.name('train')} --task tag --init-from {path} --train-conll FILE\n"
              f"Pre-train: {commands.name('train')} --task pretrain-mlm --init-from {path} "
              "--train-text FILE")  # fmt: skip
    return 0


def cli(argv=None):
    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    try:
        return main(argv)
    except (OSError, ValueError) as error:
        print(f"{commands.name('import')}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
