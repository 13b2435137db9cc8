"""`tf.data` pipelines from sentence pairs (lists, or a file stream) to `model.fit` batches.

Tokenization runs in the graph, on batches of sentences (no Python loop per
example): ids are truncated to `max_length` (source) and `max_length - 1`
(target, to leave room for the start/end token), then shifted for teacher
forcing, grouped by length to limit padding, padded per batch with 0.
"""

import tensorflow as tf

from keras_transformer.data.tokenizers import model_ids
from keras_transformer.vocabulary import END_ID, START_ID

TOKENIZE_CHUNK = 1024


def _bucket_boundaries(max_length):
    boundaries, length = [], 8
    while length < max_length:
        boundaries.append(length + 1)
        length *= 2
    return boundaries


def tokenize_pairs(pairs, source_tokenizer, target_tokenizer, max_length):
    """Dataset of `(source_ids, decoder_input_ids, label_ids)` int32 vectors from `(source, target)` strings."""

    def tokenize(source_text, target_text):
        source = source_tokenizer.tokenize(source_text)
        target = target_tokenizer.tokenize(target_text)[:, : max_length - 1]
        batch = tf.shape(source_text)[:1]
        start = tf.fill(tf.concat([batch, [1]], 0), START_ID)
        end = tf.fill(tf.concat([batch, [1]], 0), END_ID)
        decoder_inputs = tf.concat([start, target], axis=1)
        labels = tf.concat([target, end], axis=1)
        # Dense rows and lengths: unbatched ragged rows could not be padded again.
        return (
            model_ids(source_tokenizer, source, max_length),  # a cut source keeps a Marian tokenizer's end id
            tf.minimum(source.row_lengths(), max_length),
            decoder_inputs.to_tensor(0),
            labels.to_tensor(0),
            labels.row_lengths(),
        )

    def trim(source, source_length, decoder_inputs, labels, target_length):
        return source[:source_length], decoder_inputs[:target_length], labels[:target_length]

    dataset = pairs.batch(TOKENIZE_CHUNK).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return dataset.map(trim, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(
    sources,
    targets,
    source_tokenizer,
    target_tokenizer,
    max_length,
    batch_size,
    batch_by="sentences",
    shuffle=True,
    seed=None,
    repeat=False,
    count_batches=False,
):
    """Batches `({"encoder_token_ids", "decoder_token_ids"}, labels)` for `model.fit`, from lists.

    Args:
        sources, targets: aligned lists of sentences.
        source_tokenizer, target_tokenizer: `keras_transformer.data` tokenizers.
        max_length: the most tokens per side (truncated beyond).
        batch_size: sentences per batch, or, with `batch_by="tokens"`, the
            most tokens (longest side x sentences) per batch.
        batch_by: `"sentences"` or `"tokens"`.
        shuffle: shuffle all pairs (each epoch anew) before bucketing.
        seed: shuffle seed.
        repeat: repeat forever (for `steps_per_epoch`).
        count_batches: count the batches once (a tokenization pass) and
            declare the number, so Keras knows each epoch's length. Exact
            whatever the shuffle: bucket membership does not depend on order.
    """
    pairs = tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
    dataset = batch_pairs(
        pairs, source_tokenizer, target_tokenizer, max_length, batch_size, batch_by,
        shuffle_buffer=max(len(sources), 1) if shuffle else 0, seed=seed, repeat=repeat,
    )  # fmt: skip
    if count_batches and not repeat:
        unshuffled = batch_pairs(pairs, source_tokenizer, target_tokenizer, max_length, batch_size, batch_by)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(sum(1 for _ in unshuffled)))
    return dataset


def batch_pairs(
    pairs,
    source_tokenizer,
    target_tokenizer,
    max_length,
    batch_size,
    batch_by="sentences",
    shuffle_buffer=0,
    seed=None,
    repeat=False,
):
    """Batches for `model.fit` from a dataset of `(source, target)` strings (a list's, or a file stream).

    Memory is bounded by `shuffle_buffer` pairs and one batch per length
    bucket, whatever the size of `pairs`; an epoch is one pass over it
    (Keras learns its length at the end of the first).

    Args:
        pairs: unbatched `(source, target)` string scalars.
        shuffle_buffer: pairs held to shuffle (each pass anew); 0: in order.
        repeat: repeat forever (for `steps_per_epoch`).
        Others: as `make_dataset`.
    """
    if batch_by not in ("sentences", "tokens"):
        raise ValueError(f"`batch_by` must be 'sentences' or 'tokens'. Received: batch_by={batch_by!r}")
    if max_length < 2:
        raise ValueError(f"`max_length` must be at least 2. Received: max_length={max_length}")
    if shuffle_buffer:
        pairs = pairs.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        pairs = pairs.repeat()
    dataset = tokenize_pairs(pairs, source_tokenizer, target_tokenizer, max_length)
    dataset = _batch_by_length(dataset, max_length, batch_size, batch_by)

    def to_inputs(source, decoder_inputs, labels):
        return {"encoder_token_ids": source, "decoder_token_ids": decoder_inputs}, labels

    return dataset.map(to_inputs).prefetch(tf.data.AUTOTUNE)


def _batch_by_length(dataset, max_length, batch_size, batch_by):
    """Group pairs of similar length, pad per batch."""
    boundaries = _bucket_boundaries(max_length)
    upper = boundaries + [max_length + 1]
    if batch_by == "tokens":
        sizes = [max(1, batch_size // (limit - 1)) for limit in upper]
    else:
        sizes = [batch_size] * len(upper)

    def length(source, decoder_inputs, labels):
        return tf.maximum(tf.shape(source)[0], tf.shape(labels)[0])

    return dataset.bucket_by_sequence_length(length, boundaries, sizes, padded_shapes=([None], [None], [None]))
