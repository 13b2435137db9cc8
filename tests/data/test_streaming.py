"""Parallel text streamed by tf.data keeps exactly the pairs the readers keep, from files or shards."""

import gzip

import numpy as np
import pytest
import tensorflow as tf

from keras_transformer.data.readers import iter_parallel, read_parallel
from keras_transformer.data.streaming import MISALIGNED, parallel_text_dataset
from keras_transformer.tasks.trainer import _data_error


def _pairs(dataset):
    return [(a.decode(), b.decode()) for a, b in dataset.as_numpy_iterator()]


def _write(path, raw, compress=False):
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return str(path)


def test_same_pairs_as_the_readers_bad_lines_and_all(tmp_path):
    src = _write(
        tmp_path / "a.en",
        b"good one\r\nbad \xff\xfe bytes\n\nway too long " + b"x" * 50 + b"\n  fine \xc2\xa0\nnul\x00\n\xe6\x97\xa5\xe6\x9c\xac\t\n",
    )
    tgt = _write(tmp_path / "a.de", "gut\nschlecht\nleer\nlang\ngut\nn\nJapan\n".encode(), compress=True)
    sources, targets, report = read_parallel(src, tgt, max_line_chars=40)
    assert _pairs(parallel_text_dataset(src, tgt, max_line_chars=40)) == list(zip(sources, targets))
    assert sources == ["good one", "fine", "日本"] and report.kept == 3 and sum(report.skipped.values()) == 4
    tsv = _write(tmp_path / "p.tsv", "a\tb\nno tab\nx\ty\tz\n c \t d \n\t\n".encode())
    sources, targets, _ = read_parallel(tsv_path=tsv)
    assert _pairs(parallel_text_dataset(tsv_path=tsv)) == list(zip(sources, targets)) == [("a", "b"), ("c", "d")]


def test_globs_of_shards_plain_and_gzip_interleaved(tmp_path):
    for shard in range(5):
        lines = [f"s{shard} {i}" for i in range(30)]
        _write(tmp_path / f"train.{shard}.en", ("\n".join(lines) + "\n").encode(), compress=shard % 2 == 0)
        _write(tmp_path / f"train.{shard}.de", ("\n".join(line.upper() for line in lines) + "\n").encode())
    pairs = _pairs(parallel_text_dataset(str(tmp_path / "train.*.en"), str(tmp_path / "train.*.de")))
    assert sorted(pairs) == sorted(iter_parallel(str(tmp_path / "train.*.en"), str(tmp_path / "train.*.de")))
    assert len(pairs) == 150 and all(target == source.upper() for source, target in pairs)
    assert {source.split()[0] for source, _ in pairs[:64]} == {"s0", "s1", "s2", "s3"}  # 4 shards at a time
    shuffled = parallel_text_dataset(str(tmp_path / "train.*.en"), str(tmp_path / "train.*.de"), shuffle_files=True, seed=1)
    assert sorted(_pairs(shuffled)) == sorted(pairs)
    with pytest.raises(ValueError, match="no file matches"):
        parallel_text_dataset(str(tmp_path / "none.*.en"), str(tmp_path / "train.*.de"))
    with pytest.raises(ValueError, match=r"names 5 files, .* names 4"):
        parallel_text_dataset(str(tmp_path / "train.*.en"), str(tmp_path / "train.[0-3].de"))


def test_shards_that_do_not_align_are_one_message_naming_both(tmp_path):
    _write(tmp_path / "a.0.en", b"a\nb\n")
    _write(tmp_path / "a.0.de", b"x\ny\n")
    _write(tmp_path / "a.1.en", b"c\nd\ne\n")
    _write(tmp_path / "a.1.de", b"z\n", compress=True)
    with pytest.raises(ValueError, match=r"not aligned: .*a\.1\.en has 3 lines, .*a\.1\.de has 1"):
        list(iter_parallel(str(tmp_path / "a.*.en"), str(tmp_path / "a.*.de")))
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        _pairs(parallel_text_dataset(str(tmp_path / "a.*.en"), str(tmp_path / "a.*.de")))
    message = _data_error(raised.value)
    assert message.startswith(MISALIGNED) and "a.1.en and " in message and message.endswith("lines.")
    assert "\n" not in message and '"' not in message
    assert _data_error(ValueError("other")) is None


def test_skips_are_reported_with_shard_and_line(tmp_path):
    _write(tmp_path / "b.0.en", b"ok\n\xff\n")
    _write(tmp_path / "b.0.de", b"ok\nbad\n")
    _write(tmp_path / "b.1.en", b"\nfine\n")
    _write(tmp_path / "b.1.de", b"empty\nfein\n")
    sources, _, report = read_parallel(str(tmp_path / "b.*.en"), str(tmp_path / "b.*.de"))
    assert sources == ["ok", "fine"] and report.lines == 4
    assert report.examples == {"not UTF-8": ["b.0.en:2"], "empty side": ["b.1.en:1"]}


def test_reader_streams_in_constant_memory(tmp_path):
    """A generator all the way: pairs come before the files end (nothing is read whole)."""
    lines = "".join(f"sentence {i}\n" for i in range(200_000)).encode()
    src, tgt = _write(tmp_path / "big.en", lines, compress=True), _write(tmp_path / "big.de", lines)
    pairs = iter_parallel(src, tgt)
    assert next(pairs) == ("sentence 0", "sentence 0")
    import tracemalloc

    tracemalloc.start()
    count = sum(1 for _ in pairs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 199_999 and peak < 2_000_000  # bytes: the 4 MB file is never held


def test_batch_pairs_bounds_the_shuffle_and_repeats_for_steps(tmp_path):
    from keras_transformer.data.pipeline import batch_pairs
    from keras_transformer.data.tokenizers import WordPieceTokenizer

    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[START]", "[END]", "a", "b", "c"])
    pairs = tf.data.Dataset.from_tensor_slices((["a b"] * 10, ["c"] * 10))
    once = list(batch_pairs(pairs, tokenizer, tokenizer, 8, 4, shuffle_buffer=3, seed=0).as_numpy_iterator())
    assert sum(len(y) for _, y in once) == 10
    repeated = batch_pairs(pairs, tokenizer, tokenizer, 8, 4, shuffle_buffer=3, repeat=True).take(7)
    assert len(list(repeated.as_numpy_iterator())) == 7
    assert np.all(once[0][0]["decoder_token_ids"][:, 0] == 2)
