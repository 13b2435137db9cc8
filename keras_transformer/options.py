"""Typed options: dataclasses made from keyword arguments, where an unknown name is an error, never dropped."""

import dataclasses


def from_kwargs(cls, kwargs, what, error=ValueError):
    """`cls(**kwargs)` for a dataclass `cls`; names that are not its fields raise `error` naming them.

    Args:
        cls: the dataclass.
        kwargs: the keyword arguments.
        what: what the arguments are called in the message (e.g. "`generate` argument(s)").
        error: the exception class to raise.
    """
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise error(f"Unknown {what} {unknown}. Expected some of {names}.")
    return cls(**kwargs)
