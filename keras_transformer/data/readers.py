"""Readers of parallel text: two aligned files, or one TSV file.

Files may be plain or gzip-compressed (detected from their first bytes), in
UTF-8. Whole-file problems raise a `ValueError` naming the file: a missing or
empty file, a corrupt gzip file, a UTF-16 file (a byte-order mark, or NUL
bytes in most lines), aligned files whose line counts differ. Line problems
skip the pair and are counted in the returned `ReadReport`, never silently:
bytes that are not UTF-8, NUL bytes, an empty side, a line over
`max_line_chars`, a TSV line without exactly one tab.
"""

import dataclasses
import gzip
import os
import zlib

GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass
class ReadReport:
    """What a reader kept and what it skipped, by reason, with line numbers."""

    path: str
    lines: int = 0
    kept: int = 0
    skipped: dict = dataclasses.field(default_factory=dict)
    examples: dict = dataclasses.field(default_factory=dict)
    unit: str = "pairs"

    def skip(self, reason, line_number):
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(line_number)

    def summary(self):
        text = f"{self.path}: {self.kept} {self.unit} kept of {self.lines} lines"
        for reason, count in self.skipped.items():
            lines = ", ".join(map(str, self.examples[reason]))
            text += f"; {count} skipped ({reason}: line {lines}{', ...' if count > 5 else ''})"
        return text


def _read_lines(path):
    """Raw lines (bytes, no line ends) of a plain or gzip file."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file.")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip file ({error}).") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{path}: the file is UTF-16 (it starts with a byte-order mark); convert it to UTF-8.")
    if not data.strip():
        raise ValueError(f"{path}: the file is empty.")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if sum(b"\x00" in line for line in lines) > len(lines) // 2:
        raise ValueError(f"{path}: most lines hold NUL bytes (UTF-16 or binary data?); give UTF-8 text.")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _decode(line):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _keep(report, line_number, source, target, max_line_chars, sources, targets):
    if source is None or target is None:
        report.skip("not UTF-8", line_number)
    elif "\x00" in source or "\x00" in target:
        report.skip("NUL bytes", line_number)
    elif not source.strip() or not target.strip():
        report.skip("empty side", line_number)
    elif max(len(source), len(target)) > max_line_chars:
        report.skip(f"over {max_line_chars} characters", line_number)
    else:
        sources.append(source.strip())
        targets.append(target.strip())
        report.kept += 1


def read_parallel_files(source_path, target_path, max_line_chars=1000):
    """Aligned sentences from two files, line N of one translating line N of the other.

    Returns:
        `(sources, targets, report)`.
    """
    source_lines, target_lines = _read_lines(source_path), _read_lines(target_path)
    if len(source_lines) != len(target_lines):
        raise ValueError(
            f"The parallel files are not aligned: {source_path} has {len(source_lines)} lines, "
            f"{target_path} has {len(target_lines)}."
        )
    report = ReadReport(f"{source_path} + {target_path}", lines=len(source_lines))
    sources, targets = [], []
    for number, (source, target) in enumerate(zip(source_lines, target_lines), start=1):
        _keep(report, number, _decode(source), _decode(target), max_line_chars, sources, targets)
    return sources, targets, report


def read_tsv(path, max_line_chars=1000):
    """Sentence pairs from `source<TAB>target` lines.

    Returns:
        `(sources, targets, report)`.
    """
    lines = _read_lines(path)
    report = ReadReport(path, lines=len(lines))
    sources, targets = [], []
    for number, raw in enumerate(lines, start=1):
        line = _decode(raw)
        if line is not None and line.count("\t") != 1:
            report.skip("not one tab", number)
            continue
        source, target = line.split("\t") if line is not None else (None, None)
        _keep(report, number, source, target, max_line_chars, sources, targets)
    return sources, targets, report


def read_lines(path):
    """The sentences of one file (plain or gzip), one per line, as strings.

    Lines that are not UTF-8 are read with replacement characters; NUL
    characters are dropped.
    """
    return [line.decode("utf-8", errors="replace").replace("\x00", "") for line in _read_lines(path)]


def read_parallel(source_path=None, target_path=None, tsv_path=None, max_line_chars=1000):
    """Either two aligned files or one TSV file; raises if the reader keeps no pair."""
    if tsv_path and (source_path or target_path):
        raise ValueError("Give either a TSV file or a source and a target file, not both.")
    if tsv_path:
        result = read_tsv(tsv_path, max_line_chars)
    elif source_path and target_path:
        result = read_parallel_files(source_path, target_path, max_line_chars)
    else:
        raise ValueError("Give a source and a target file (or one TSV file).")
    if not result[0]:
        raise ValueError(f"No usable sentence pair: {result[2].summary()}")
    return result
