"""The one error every part of `export` raises for a run it cannot export."""


class ExportError(ValueError):
    """A run that cannot be exported (missing or mismatched files, an unknown format or option)."""
