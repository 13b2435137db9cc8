"""Translate stdin to stdout, one sentence per line, with a trained run.

    python -m keras_transformer.translate --model runs/<name> < input.txt > output.txt

Empty lines give empty lines; inputs over the model's maximum length are
truncated (a warning on stderr counts them); bytes that are not UTF-8 are
replaced by U+FFFD (a warning counts the lines) and every line is
translated. Beam search (beam 4, length penalty 0.6, as in the paper) by
default; --beam-size 1 is greedy search.
"""

import argparse
import sys

from keras_transformer import commands, quiet


def main(argv=None):
    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    parser = argparse.ArgumentParser(
        prog=commands.name("translate"), description=commands.named(__doc__), formatter_class=commands.HelpFormatter
    )
    parser.add_argument("--model", required=True, help="a run directory written by train.py")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences decoded at once (default: %(default)s)")
    parser.add_argument("--max-length", type=int, help="most target tokens (default: the model's maximum)")
    parser.add_argument("--beam-size", type=int, default=4, help="beams per sentence; 1 is greedy search (default: %(default)s)")
    parser.add_argument("--length-penalty", type=commands.finite_float, default=0.6, help="GNMT's alpha for beam search (default: %(default)s)")
    parser.add_argument(
        "--length-penalty-form", choices=["gnmt", "length"], default="gnmt",
        help="beam scores: log P / ((5 + length) / 6) ** alpha (gnmt), or log P / length ** alpha (length: "
        "transformers' length_penalty) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--exact-stop",
        action="store_true",
        help="beam search stops a sentence only once no live beam could beat its finished translations at any "
        "length up to --max-length (slower; finds the longer translations a large --length-penalty favours)",
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress on stderr (on a terminal: one redrawn line; otherwise a line every 30 s of a long job)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.beam_size < 1 or args.batch_size < 1:
        parser.error("--beam-size and --batch-size must be at least 1")

    from keras_transformer.translator import Translator, terminal_progress, warn_truncated

    try:
        translator = Translator.from_run(
            args.model,
            max_length=args.max_length,
            beam_size=args.beam_size,
            length_penalty=args.length_penalty,
            length_penalty_form=args.length_penalty_form,
            exact_stop=args.exact_stop,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"translate: error: {str(error).replace('`max_length`', '--max-length')}", file=sys.stderr)
        return 2
    lines = read_stdin()
    progress = terminal_progress() if not args.quiet else None  # stderr
    for translation in translator.translate(lines, args.batch_size, progress=progress):
        sys.stdout.write(translation + "\n")
    warn_truncated(translator)
    return 0


def read_stdin():
    """Standard input's lines; bytes that are not UTF-8 become U+FFFD (a warning counts the lines).

    Only "\n" ends a line (and a "\r" before it, as Windows writes them): a
    lone "\r", a form feed or U+2028 inside a line stays in it, so every input
    line has its output line.
    """
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
    lines, damaged = [], []
    raws = data.split(b"\n")
    if raws[-1] == b"":
        raws.pop()  # the newline that ends the last line
    for number, raw in enumerate((raw[:-1] if raw.endswith(b"\r") else raw for raw in raws), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", errors="replace"))
            damaged.append(number)
    if damaged:
        print(f"warning: {len(damaged)} input line(s) are not UTF-8 (first: line {damaged[0]}); "
              "their bad bytes became U+FFFD.", file=sys.stderr)  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
