"""Parallel text as a `tf.data` stream: files or globs of shards, plain or gzip, in constant memory.

`parallel_text_dataset` reads the same files as `readers.iter_parallel`
(TensorFlow's `TextLineDataset`, shards interleaved) and keeps the same
lines: it drops a pair with bytes that are not UTF-8, a NUL byte, an empty
side or a side over `max_line_chars` characters (and, for TSV, a line without
exactly one tab), in the graph. Counting and reporting those lines is the
readers' job (the pass that samples the tokenizer's text); a stream whose
two files turn out not to have the same number of lines stops with an
`InvalidArgumentError` holding `MISALIGNED` and both file names.
"""

import tensorflow as tf

from keras_transformer.data.readers import expand_files, is_gzip

MISALIGNED = "The parallel files are not aligned"
# Python's str.strip() whitespace, as RE2 writes it: ASCII space and controls, \x1c-\x1f, NEL, Unicode separators.
_SPACE = r"[\s\x0b\x1c-\x1f\x85\p{Z}]"


def _compression(paths):
    return ["GZIP" if is_gzip(path) else "" for path in paths]


def _lines_then_end(path, compression):
    """`(line, True)` for each line, then `("", False)` forever: where a file ended shows in a zip."""
    lines = tf.data.TextLineDataset(path, compression_type=compression).map(lambda line: (line, True))
    return lines.concatenate(tf.data.Dataset.from_tensors((tf.constant(""), False)).repeat())


def _aligned_pairs(source_path, source_compression, target_path, target_compression):
    pairs = tf.data.Dataset.zip(
        _lines_then_end(source_path, source_compression), _lines_then_end(target_path, target_compression)
    )
    pairs = pairs.take_while(lambda source, target: tf.logical_or(source[1], target[1]))

    def check(source, target):
        message = tf.strings.format(MISALIGNED + ": {} and {} do not have the same number of lines.", (source_path, target_path))
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(source[1], target[1]), [message])]):
            return tf.identity(source[0]), tf.identity(target[0])

    return pairs.map(check)


def _tsv_pairs(path, compression):
    lines = tf.data.TextLineDataset(path, compression_type=compression)
    lines = lines.filter(lambda line: tf.strings.regex_full_match(line, "[^\t]*\t[^\t]*"))
    return lines.map(lambda line: tuple(tf.unstack(tf.strings.split(line, "\t", maxsplit=1), num=2)))


def keep_pair(source, target, max_line_chars):
    """Whether `readers` would keep the pair (UTF-8, no NUL byte, no empty side, not over `max_line_chars`)."""
    keep = tf.constant(True)
    for side in (source, target):
        valid = tf.equal(tf.strings.unicode_transcode(side, "UTF-8", "UTF-8", errors="replace"), side)
        keep = keep & valid & tf.logical_not(tf.strings.regex_full_match(side, "(?s).*\x00.*"))
        keep = keep & tf.logical_not(tf.strings.regex_full_match(side, f"{_SPACE}*"))
    for side in (source, target):
        keep = keep & (tf.strings.length(side, unit="UTF8_CHAR") <= max_line_chars)
    return keep


def strip(text):
    """`str.strip()` in the graph."""
    return tf.strings.regex_replace(text, f"^{_SPACE}+|{_SPACE}+$", "")


def parallel_text_dataset(
    source_path=None, target_path=None, tsv_path=None, max_line_chars=1000, shuffle_files=False, seed=None
):
    """`(source, target)` string pairs streamed from files, as `readers.iter_parallel` keeps them.

    Args:
        source_path, target_path: a file or a glob of shards each (the i-th
            sorted source shard aligned with the i-th target shard); or
        tsv_path: `source<TAB>target` lines (a file or a glob).
        max_line_chars: longer lines are dropped.
        shuffle_files: visit the shards in a new order each pass.
        seed: of that order.

    Returns:
        An unbatched `tf.data.Dataset` of two string scalars, one pass over
        the files (`repeat()` it for more).
    """
    if tsv_path:
        sources = expand_files(tsv_path)
        files = tf.data.Dataset.from_tensor_slices((sources, _compression(sources)))
        reader = _tsv_pairs
    else:
        sources, targets = expand_files(source_path), expand_files(target_path)
        if len(sources) != len(targets):
            raise ValueError(
                f"{MISALIGNED}: {source_path} names {len(sources)} files, {target_path} names {len(targets)}."
            )
        files = tf.data.Dataset.from_tensor_slices(
            (sources, _compression(sources), targets, _compression(targets))
        )
        reader = _aligned_pairs
    if shuffle_files and len(sources) > 1:
        files = files.shuffle(len(sources), seed=seed, reshuffle_each_iteration=True)
    pairs = files.interleave(
        reader, cycle_length=min(4, len(sources)), block_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    pairs = pairs.filter(lambda source, target: keep_pair(source, target, max_line_chars))
    return pairs.map(lambda source, target: (strip(source), strip(target)), num_parallel_calls=tf.data.AUTOTUNE)
