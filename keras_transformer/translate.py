"""Translate stdin to stdout, one sentence per line, with a trained run.

    python -m keras_transformer.translate --model runs/<name> < input.txt > output.txt

Empty lines give empty lines; inputs over the model's maximum length are
truncated (a warning on stderr counts them). Greedy decoding.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a run directory written by train.py")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences decoded at once")
    parser.add_argument("--max-length", type=int, help="most target tokens (default: the model's maximum)")
    args = parser.parse_args(argv)

    from keras_transformer.translator import Translator, warn_truncated

    try:
        translator = Translator.from_run_directory(args.model, max_length=args.max_length)
    except (FileNotFoundError, ValueError) as error:
        print(f"translate: error: {error}", file=sys.stderr)
        return 2
    lines = sys.stdin.read().splitlines()
    for translation in translator.translate(lines, args.batch_size):
        sys.stdout.write(translation + "\n")
    warn_truncated(translator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
