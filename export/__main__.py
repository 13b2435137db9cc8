"""python -m export --model runs/<name> [--format NAME ...] [--out DIR]"""

import argparse
import sys

from keras_transformer import commands, quiet


def parse_args(argv=None):
    from . import all_formats

    parser = argparse.ArgumentParser(
        prog=commands.name("export"), description=commands.named(__doc__), formatter_class=commands.HelpFormatter
    )
    parser.add_argument("--model", required=True, help="a run directory written by train.py")
    parser.add_argument(
        "--format",
        action="append",
        choices=all_formats() + ["all", "default"],
        help="repeatable; all (the default): every format of the run's family but marian (asked for by name); default: "
        "what train.py exports",
    )
    parser.add_argument("--out", help="output directory (default: <model>/export)")
    parser.add_argument("--beam-size", type=int, default=4, help="beam_search and translate_beam signatures (default: %(default)s)")
    parser.add_argument("--length-penalty", type=commands.finite_float, default=0.6, help="their length penalty (default: %(default)s)")
    parser.add_argument(
        "--length-penalty-form", choices=["gnmt", "length"], default="gnmt",
        help="log P / ((5 + length) / 6) ** alpha (gnmt), or log P / length ** alpha (length: transformers' form) "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--version", type=int, default=1, help="SavedModel version directory: saved_model/VERSION/ (default: %(default)s)")
    parser.add_argument(
        "--data", help="source sentences for int8 calibration and GPTQ rounding (default: the run's calibration.txt)"
    )
    parser.add_argument(
        "--int8-rounding", default="nearest", choices=["nearest", "gptq"],
        help="dynamic-int8 weights of translation runs: rounded to nearest, or against the calibration sentences' "
        "activations (gptq) (default: %(default)s)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None):
    from . import ExportOptions, Run, export_run, formats_for
    from .run import read_source_lines

    args = parse_args(argv)
    options = ExportOptions(
        beam_size=args.beam_size, length_penalty=args.length_penalty, version=args.version,
        int8_rounding=args.int8_rounding, length_penalty_form=args.length_penalty_form,
    )  # checked first
    run = Run(args.model)
    formats = formats_for(run.family, args.format or ["all"], what="--format")
    calibration = tuple(read_source_lines(args.data)) if args.data else None
    return export_run(
        args.model, formats, out=args.out, run=run, beam_size=options.beam_size,
        length_penalty=options.length_penalty, calibration_sentences=calibration, version=options.version,
        int8_rounding=options.int8_rounding, length_penalty_form=options.length_penalty_form,
    )  # fmt: skip


def cli(argv=None):
    from .errors import exit_code

    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    return exit_code(main, commands.name("export"), argv)


if __name__ == "__main__":
    sys.exit(cli())
