import gzip

import pytest

from keras_transformer.data.readers import read_parallel, read_parallel_files, read_tsv


def _write(path, lines, compress=False, raw=None):
    data = raw if raw is not None else ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


@pytest.mark.parametrize("compress", [False, True])
def test_two_aligned_files_plain_or_gzip(tmp_path, compress):
    src = _write(tmp_path / "a.en", ["Hello.", "Grüße!", "日本"], compress)
    tgt = _write(tmp_path / "a.de", ["Hallo.", "Greetings!", "Japan"], compress)
    sources, targets, report = read_parallel(src, tgt)
    assert sources == ["Hello.", "Grüße!", "日本"] and targets == ["Hallo.", "Greetings!", "Japan"]
    assert report.kept == 3 and not report.skipped


def test_tsv_and_windows_line_ends(tmp_path):
    path = _write(tmp_path / "p.tsv", None, raw="one\teins\r\ntwo\tzwei\r\n".encode())
    sources, targets, _ = read_parallel(tsv_path=path)
    assert sources == ["one", "two"] and targets == ["eins", "zwei"]


def test_mismatched_line_counts_name_both_files(tmp_path):
    src = _write(tmp_path / "a.en", ["a", "b", "c"])
    tgt = _write(tmp_path / "a.de", ["x", "y"])
    with pytest.raises(ValueError, match=r"not aligned: .*a\.en has 3 lines, .*a\.de has 2"):
        read_parallel_files(src, tgt)


@pytest.mark.parametrize("raw, match", [(b"", "empty"), (b"\n\n  \n", "empty"), (b"\x1f\x8bnot gzip", "corrupt gzip")])
def test_empty_or_corrupt_files_raise(tmp_path, raw, match):
    bad = _write(tmp_path / "bad", None, raw=raw)
    good = _write(tmp_path / "good", ["x"])
    with pytest.raises(ValueError, match=match):
        read_parallel(bad, good)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_parallel(str(tmp_path / "nope"), str(tmp_path / "nope2"))


def test_bad_lines_are_skipped_counted_and_reported(tmp_path):
    src = _write(tmp_path / "a.en", None, raw=b"good one\nbad \xff\xfe bytes\n\nway too long " + b"x" * 50 + b"\nfine\n")
    tgt = _write(tmp_path / "a.de", ["gut", "schlecht", "leer", "lang", "gut"])
    sources, targets, report = read_parallel(src, tgt, max_line_chars=40)
    assert sources == ["good one", "fine"] and targets == ["gut", "gut"]
    assert report.skipped == {"not UTF-8": 1, "empty side": 1, "over 40 characters": 1}
    summary = report.summary()
    assert "2 pairs kept of 5 lines" in summary and "not UTF-8: line 2" in summary and "empty side: line 3" in summary


def test_tsv_lines_without_one_tab_are_skipped(tmp_path):
    path = _write(tmp_path / "p.tsv", ["a\tb", "no tab", "x\ty\tz", "c\td"])
    sources, _, report = read_tsv(path)
    assert sources == ["a", "c"] and report.skipped == {"not one tab": 2}


def test_no_usable_pair_and_bad_argument_combinations(tmp_path):
    path = _write(tmp_path / "p.tsv", ["no tab", "still none"])
    with pytest.raises(ValueError, match="No usable sentence pair"):
        read_parallel(tsv_path=path)
    with pytest.raises(ValueError, match="not both"):
        read_parallel(path, path, tsv_path=path)
    with pytest.raises(ValueError, match="source and a target"):
        read_parallel(source_path=path)


def test_corrupt_gzip_body_utf16_and_nul_bytes(tmp_path):
    from keras_transformer.data.readers import read_lines

    good = gzip.compress(("\n".join(f"line {i}" for i in range(200)) + "\n").encode())
    corrupt = good[:20] + bytes(b ^ 0xFF for b in good[20:60]) + good[60:]
    path = _write(tmp_path / "c.gz", None, raw=corrupt)
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_lines(path)
    with pytest.raises(ValueError, match="UTF-16"):
        read_lines(_write(tmp_path / "u16.txt", None, raw="one\ntwo\n".encode("utf-16")))
    with pytest.raises(ValueError, match="NUL bytes"):
        read_lines(_write(tmp_path / "u16le.txt", None, raw="one\ntwo\nthree\n".encode("utf-16-le")))
    # A few lines with NUL bytes are skipped and counted; the rest is read.
    src = _write(tmp_path / "n.en", None, raw=b"good\nbad\x00line\nfine\n")
    tgt = _write(tmp_path / "n.de", ["gut", "schlecht", "fein"])
    sources, targets, report = read_parallel(src, tgt)
    assert sources == ["good", "fine"] and report.skipped == {"NUL bytes": 1}
    assert read_lines(src) == ["good", "badline", "fine"]
