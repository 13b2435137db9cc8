"""Argument checks with Keras's wording ("Received: name=value"), for every floor of the package.

Layers, models, data pipelines, tasks, optimizers and schedules all check
their arguments the same way; this module imports nothing, so any of them
may use it.
"""

import math


def check_positive_int(value, name, allow_none=False):
    """`value` must be an `int` above 0 (not a bool); `None` passes when `allow_none`."""
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value}")


def check_non_negative_int(value, name):
    """`value` must be an `int` of 0 or more (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value}")


def check_rate(value, name):
    """`value` must be a rate in [0, 1), as dropout rates are."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")


def check_finite(value, name):
    """`value` must be a real number that is neither NaN nor infinite (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")


def check_bool(value, name):
    """`value` must be True or False (numpy's bool too), not a truthy stand-in such as 1 or "yes"."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")  # no numpy import
    if not isinstance(value, bool) and not numpy_bool:
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
