"""Train a Transformer and write a run directory: `python train.py --help`.

The command lives in `keras_transformer.train` (installed as `kt-train`);
this file runs it from a checkout.
"""

import sys

from keras_transformer.train import FLAGS, as_flags, cli, export_formats, main, parse_args, read_config  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
