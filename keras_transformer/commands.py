"""How the project's commands name themselves and each other.

From a checkout they run as `python train.py`, `python -m export`, ...;
installed (`pip install .`) they are `kt-train`, `kt-export`, ... on the PATH,
and `python -m export` exists only in a checkout (the package installs as
`keras_transformer.export`). Usage lines and hints ("run kt-export first")
name the form that works where the user is.
"""

import argparse
import importlib.util
import math
import os
import sys

CHECKOUT = {
    "train": "python train.py",
    "translate": "python -m keras_transformer.translate",
    "attention": "python -m keras_transformer.attention",
    "export": "python -m export",
    "verify": "python -m export.verify",
    "run_tflite": "python -m export.run_tflite",
    "import": "python -m keras_transformer.pretrained",
}
INSTALLED = {
    "train": "kt-train",
    "translate": "kt-translate",
    "attention": "kt-attention",
    "export": "kt-export",
    "verify": "kt-verify",
    "run_tflite": "kt-run-tflite",
    "import": "kt-import",
}


def in_checkout():
    """Whether a checkout's top-level `export/` (beside its `train.py`) is importable from here."""
    try:
        spec = importlib.util.find_spec("export")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    return os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "train.py"))


def _installed():
    """Whether this process runs an installed `kt-*` command, or outside a checkout."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return invoked.startswith("kt-") or not in_checkout()


def name(command):
    """How to run `command` ("train", "export", ...): `kt-export` when installed, `python -m export` in a checkout."""
    return INSTALLED[command] if _installed() else CHECKOUT[command]


def finite_float(text):
    """An argparse type: a float that is neither NaN nor infinite (`float` takes "nan" and "inf")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def named(text):
    """`text` (a usage docstring) with every command written as `name()` gives it here."""
    if _installed():
        for command in sorted(CHECKOUT, key=lambda c: -len(CHECKOUT[c])):  # `python -m export.verify` first
            text = text.replace(CHECKOUT[command], INSTALLED[command])
    return text


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; every flag's default after its help (none for switches and unset ones)."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if not hidden and "%(default)" not in text:  # 0 is a default to show (`0 in (None, False)` is true)
            text += " (default: %(default)s)"
        return text.strip() or " "
