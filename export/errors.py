"""The one error every part of `export` raises for a run it cannot export, and how command lines report it."""

import sys


class ExportError(ValueError):
    """A run that cannot be exported (missing or mismatched files, an unknown format or option)."""


class ExportDiskFullError(ExportError):
    """The file system filled up while an artifact was written (`run_directory.is_disk_full` reads `disk_full`)."""

    disk_full = True


def exit_code(main, prog, argv=None):
    """Run a command line's `main(argv)`: 0, or 2 with a one-line error for a bad run or file."""
    try:
        main(argv)
    except (ExportError, FileNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
