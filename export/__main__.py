"""python -m export --model runs/<name> [--format NAME ...] [--out DIR]"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What train.py exports at the end of a run. Left out: tflite_int8, whose
# calibration is slow and whose tokens drift most from float32, and the
# dynamic-int8 text variant (see the README).
DEFAULT_FORMATS = ("saved_model", "tflite", "tflite_float16", "tflite_dynamic_int8", "tflite_text")
ALL_FORMATS = DEFAULT_FORMATS + ("tflite_text_dynamic_int8", "tflite_int8")


def parse_args(argv=None):
    from export.registry import FORMATS

    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--model", required=True, help="a run directory written by train.py")
    parser.add_argument(
        "--format",
        action="append",
        choices=sorted(FORMATS) + ["all"],
        help=f"repeatable; all: {', '.join(ALL_FORMATS)} (the default; for classify/tag/lm runs: saved_model and "
        "the three TFLite variants)",
    )
    parser.add_argument("--out", help="output directory (default: <model>/export)")
    parser.add_argument("--beam-size", type=int, default=4, help="beam_search and translate_beam signatures")
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--data", help="source sentences for int8 calibration (default: the run's training data)")
    return parser.parse_args(argv)


def main(argv=None):
    import export
    from export.run import read_source_lines

    from export.families import FAMILY_FORMATS

    args = parse_args(argv)
    run = export.Run(args.model)
    formats = args.format or ["all"]
    every = ALL_FORMATS if run.family == "translate" else FAMILY_FORMATS
    formats = list(every) if "all" in formats else list(dict.fromkeys(formats))
    if args.beam_size < 1:
        raise export.ExportError(f"--beam-size must be positive. Received: {args.beam_size}")
    options = {"beam_size": args.beam_size, "length_penalty": args.length_penalty}
    if args.data:
        options["calibration_sentences"] = read_source_lines(args.data)
    return export.export_run(args.model, formats, out=args.out, run=run, **options)


def cli(argv=None):
    from export.run import ExportError

    try:
        main(argv)
    except (ExportError, FileNotFoundError) as error:
        print(f"python -m export: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
