"""python -m keras_transformer.pretrained HF_DIR --out OUT --name NAME

Read a Hugging Face checkpoint directory into the run directory OUT/NAME.
A Marian (OPUS-MT) model becomes a translation run, which translates,
exports and fine-tunes as a trained run does; a BERT model a masked-LM run
whose encoder `train.py --task classify|tag --init-from OUT/NAME` fine-tunes;
a GPT-2 model a language-model run:

    python -m keras_transformer.pretrained opus-mt-en-de --out runs --name opus-en-de
    python -m keras_transformer.translate --model runs/opus-en-de <<< "How are you?"
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
    return parser.parse_args(argv)


def main(argv=None):
    from keras_transformer.pretrained import import_checkpoint, read_model_type

    args = parse_args(argv)
    model_type = read_model_type(args.checkpoint)
    path = import_checkpoint(args.checkpoint, args.out, args.name, max_sequence_length=args.max_length)
    if model_type == "marian":
        print(f"Imported {args.checkpoint} as {path}\n"
              f"Translate: {commands.name('translate')} --model {path}\n"
              f"Export:    {commands.name('export')} --model {path}")  # fmt: skip
    elif model_type == "gpt2":
        print(f"Imported {args.checkpoint} as {path} (a language-model run)\n"
              f"Fine-tune: {commands.name('train')} --task lm --init-from {path} --train-text FILE\n"
              f"Export:    {commands.name('export')} --model {path}")  # fmt: skip
    else:
        print(f"Imported {args.checkpoint} as {path} (a masked-LM run: fine-tune its encoder)\n"
              f"Classify:  {commands.name('train')} --task classify --init-from {path} --pooling pooler "
              "--train-tsv FILE\n"
              f"Tag:       {commands.name('train')} --task tag --init-from {path} --train-tsv FILE")  # fmt: skip
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
