"""Readers of parallel text: two aligned files, or one TSV file, or globs of their shards.

Files may be plain or gzip-compressed (detected from their first bytes), in
UTF-8, and are streamed line by line (`iter_parallel`: constant memory,
whatever the corpus size; `read_parallel` collects the pairs in lists). Whole-file problems raise a `ValueError` naming the file: a missing or
empty file, a corrupt gzip file, a UTF-16 file (a byte-order mark, or NUL
bytes in most lines), aligned files whose line counts differ. Line problems
skip the pair and are counted in the returned `ReadReport`, never silently:
bytes that are not UTF-8, NUL bytes, an empty side, a line over
`max_line_chars`, a TSV line without exactly one tab.
"""

import dataclasses
import glob
import gzip
import itertools
import os
import zlib

GZIP_MAGIC = b"\x1f\x8b"
NUL_CHECK_LINES = 100  # a file whose first lines mostly hold NUL bytes is refused (UTF-16 without a mark)


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


def expand_files(pattern):
    """The files a path or a glob (`wmt/train.*.en.gz`) names, sorted; a `ValueError` when none."""
    if glob.has_magic(pattern):
        paths = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
        if not paths:
            raise ValueError(f"{pattern}: no file matches.")
        return paths
    if not os.path.isfile(pattern):
        raise ValueError(f"{pattern}: no such file.")
    return [pattern]


def is_gzip(path):
    """Whether the file starts with gzip's magic bytes (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def iter_raw_lines(path):
    """Raw lines (bytes, no line ends) of a plain or gzip file, streamed.

    Whole-file problems raise a `ValueError` naming the file: missing,
    corrupt gzip (when reached), UTF-16 (a byte-order mark, or NUL bytes in
    most of the first `NUL_CHECK_LINES` lines: checked before any line is
    given), empty (found at the end).
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file.")
    compressed = is_gzip(path)
    opener = gzip.open if compressed else open
    head, text = [], False
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if number == 1 and line.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise ValueError(f"{path}: the file is UTF-16 (it starts with a byte-order mark); convert it to UTF-8.")
                line = line[:-1] if line.endswith(b"\n") else line
                line = line[:-1] if line.endswith(b"\r") else line
                text = text or bool(line.strip())
                if len(head) < NUL_CHECK_LINES:
                    head.append(line)
                    if len(head) == NUL_CHECK_LINES:
                        yield from _checked_head(path, head)
                    continue
                yield line
            if len(head) < NUL_CHECK_LINES:
                yield from _checked_head(path, head)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: {'corrupt gzip file' if compressed else 'cannot be read'} ({error}).") from None
    if not text:
        raise ValueError(f"{path}: the file is empty.")


def _checked_head(path, head):
    if sum(b"\x00" in line for line in head) > len(head) // 2:
        raise ValueError(f"{path}: most lines hold NUL bytes (UTF-16 or binary data?); give UTF-8 text.")
    return head


def _read_lines(path):
    """All raw lines of a file (see `iter_raw_lines`), for files read whole (labels, CoNLL)."""
    return list(iter_raw_lines(path))


def _decode(line):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _kept(report, where, source, target, max_line_chars):
    """The stripped pair, or `None` with the reason counted in `report`."""
    if source is None or target is None:
        report.skip("not UTF-8", where)
    elif "\x00" in source or "\x00" in target:
        report.skip("NUL bytes", where)
    elif not source.strip() or not target.strip():
        report.skip("empty side", where)
    elif max(len(source), len(target)) > max_line_chars:
        report.skip(f"over {max_line_chars} characters", where)
    else:
        report.kept += 1
        return source.strip(), target.strip()
    return None


def iter_parallel_files(source_pattern, target_pattern, report, max_line_chars=1000):
    """Kept `(source, target)` pairs of aligned files, streamed; skips counted in `report`.

    Each pattern is a file or a glob of shards; the i-th source shard is
    aligned with the i-th target shard (sorted by name). Shards that do not
    pair up, or a pair whose line counts differ (found when the shorter one
    ends), raise a `ValueError` naming the files.
    """
    sources, targets = expand_files(source_pattern), expand_files(target_pattern)
    if len(sources) != len(targets):
        raise ValueError(
            f"The parallel files are not aligned: {source_pattern} names {len(sources)} files, "
            f"{target_pattern} names {len(targets)}."
        )
    for source_path, target_path in zip(sources, targets):
        label = (lambda n: n) if len(sources) == 1 else (lambda n, name=os.path.basename(source_path): f"{name}:{n}")
        end = object()
        number = 0
        pairs = itertools.zip_longest(iter_raw_lines(source_path), iter_raw_lines(target_path), fillvalue=end)
        for number, (source, target) in enumerate(pairs, start=1):
            if source is end or target is end:
                longer = iter_raw_lines(target_path if source is end else source_path)
                count = number - 1 + sum(1 for _ in itertools.islice(longer, number - 1, None))
                counts = (number - 1, count) if source is end else (count, number - 1)
                raise ValueError(
                    f"The parallel files are not aligned: {source_path} has {counts[0]} lines, "
                    f"{target_path} has {counts[1]}."
                )
            report.lines += 1
            pair = _kept(report, label(number), _decode(source), _decode(target), max_line_chars)
            if pair is not None:
                yield pair


def iter_tsv(pattern, report, max_line_chars=1000):
    """Kept pairs of `source<TAB>target` lines (a file or a glob of shards), streamed."""
    paths = expand_files(pattern)
    for path in paths:
        for number, raw in enumerate(iter_raw_lines(path), start=1):
            where = number if len(paths) == 1 else f"{os.path.basename(path)}:{number}"
            report.lines += 1
            line = _decode(raw)
            if line is not None and line.count("\t") != 1:
                report.skip("not one tab", where)
                continue
            source, target = line.split("\t") if line is not None else (None, None)
            pair = _kept(report, where, source, target, max_line_chars)
            if pair is not None:
                yield pair


def iter_parallel(source_path=None, target_path=None, tsv_path=None, max_line_chars=1000, report=None):
    """Kept pairs of two aligned files (or globs) or of TSV files, streamed in constant memory.

    `report` (a `ReadReport`, made when `None`) counts the lines read and
    skipped as they stream.
    """
    if tsv_path and (source_path or target_path):
        raise ValueError("Give either a TSV file or a source and a target file, not both.")
    if tsv_path:
        report = report if report is not None else ReadReport(tsv_path)
        return iter_tsv(tsv_path, report, max_line_chars)
    if source_path and target_path:
        report = report if report is not None else ReadReport(f"{source_path} + {target_path}")
        return iter_parallel_files(source_path, target_path, report, max_line_chars)
    raise ValueError("Give a source and a target file (or one TSV file).")


def parallel_report(source_path=None, target_path=None, tsv_path=None):
    """An empty `ReadReport` named after the files `iter_parallel` reads."""
    return ReadReport(tsv_path if tsv_path else f"{source_path} + {target_path}")


def read_parallel_files(source_path, target_path, max_line_chars=1000):
    """Aligned sentences from two files, line N of one translating line N of the other.

    Returns:
        `(sources, targets, report)`.
    """
    report = ReadReport(f"{source_path} + {target_path}")
    return _lists(iter_parallel_files(source_path, target_path, report, max_line_chars), report)


def read_tsv(path, max_line_chars=1000):
    """Sentence pairs from `source<TAB>target` lines.

    Returns:
        `(sources, targets, report)`.
    """
    report = ReadReport(path)
    return _lists(iter_tsv(path, report, max_line_chars), report)


def _lists(pairs, report):
    sources, targets = [], []
    for source, target in pairs:
        sources.append(source)
        targets.append(target)
    return sources, targets, report


def read_lines(path):
    """The sentences of one file (plain or gzip), one per line, as strings.

    Lines that are not UTF-8 are read with replacement characters; NUL
    characters are dropped.
    """
    return [line.decode("utf-8", errors="replace").replace("\x00", "") for line in iter_raw_lines(path)]


def read_parallel(source_path=None, target_path=None, tsv_path=None, max_line_chars=1000):
    """Either two aligned files or one TSV file; raises if the reader keeps no pair."""
    report = parallel_report(source_path, target_path, tsv_path)
    result = _lists(iter_parallel(source_path, target_path, tsv_path, max_line_chars, report), report)
    if not result[0]:
        raise ValueError(f"No usable sentence pair: {result[2].summary()}")
    return result
