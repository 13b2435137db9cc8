"""Draw the attention of a trained translation model on one sentence.

    python -m keras_transformer.attention --model runs/<name> "A man is riding a bike." --out attention.png

Greedy-decodes the sentence, then draws, with the subword pieces as tick
labels, the cross-attention of every layer and head (each row: the source
pieces the model looked at to produce that target piece); `--kinds` adds the
encoder and decoder self-attention, `--layers` and `--heads` pick panels
(counted from 1). The picture is written through a temporary file and a rename.
"""

import argparse
import os
import sys

from keras_transformer import commands, quiet

KIND_NAMES = {"cross": "cross_attention", "encoder": "encoder_self_attention", "decoder": "decoder_self_attention"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=commands.name("attention"),
        description=commands.named(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sentence", help="the source sentence")
    parser.add_argument("--model", required=True, help="a translation run directory written by train.py")
    parser.add_argument("--out", default="attention.png", help="the picture (.png, .svg, .pdf) (default: %(default)s)")
    parser.add_argument(
        "--kinds", nargs="+", choices=sorted(KIND_NAMES), default=["cross"],
        help="cross-attention, encoder or decoder self-attention (default: cross)",
    )  # fmt: skip
    parser.add_argument("--layers", nargs="+", type=int, help="layers to draw, from 1 (default: all)")
    parser.add_argument("--heads", nargs="+", type=int, help="heads to draw, from 1 (default: all)")
    parser.add_argument("--dpi", type=int, default=100, help="(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise ValueError(f"--out {args.out}: the directory {out_dir} does not exist.")
    for flag, values in (("--layers", args.layers), ("--heads", args.heads)):
        if values and min(values) < 1:
            raise ValueError(f"{flag} counts from 1. Received: {values}")
    from keras_transformer.translator import Translator
    from keras_transformer.visualization import attention_figure, figure_format, save_figure

    try:
        figure_format(args.out)  # before the model loads
    except ValueError as error:
        raise ValueError(f"--out: {error}") from None

    translator = Translator.from_run(args.model, beam_size=1)
    model = translator.model
    for flag, values, count in (("--layers", args.layers, model.num_layers), ("--heads", args.heads, model.num_heads)):
        if values and max(values) > count:
            raise ValueError(f"{flag}: the model has {count}, counted from 1. Received: {values}")
    layers = [layer - 1 for layer in args.layers] if args.layers else None
    heads = [head - 1 for head in args.heads] if args.heads else None
    kinds = tuple(KIND_NAMES[kind] for kind in args.kinds)
    figure, translation = attention_figure(translator, args.sentence, kinds, layers, heads)
    save_figure(figure, args.out, dpi=args.dpi)
    print(f"{translation}\n{args.out}")
    return 0


def cli(argv=None):
    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    try:
        return main(argv)
    except (OSError, ValueError) as error:
        print(f"attention: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
