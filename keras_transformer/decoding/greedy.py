"""Greedy search and sampling: one token per sentence per step, one compiled loop."""

import keras
from keras import ops

from keras_transformer.layers.masks import mask_value
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID


def _never_output_ids(logits, start_id):
    ids = ops.arange(ops.shape(logits)[-1])[None, :]
    return ops.logical_or(ops.equal(ids, PAD_ID), ops.equal(ids, start_id))  # (1, V)


def never_output(logits, start_id=START_ID):
    """`(B, V)` float32 logits where the padding and start ids rank last: they are never an output.

    Training never targets them, so a trained model rarely ranks them first;
    a model brought in from elsewhere may (Marian's start token is its pad
    piece, and OPUS-MT checkpoints forbid it by `bad_words_ids`). They get
    the row's lowest logit minus one, not a huge negative: a fully int8
    model quantizes this tensor by its range, which must stay the logits'.
    Sampling masks them out entirely (`sampler`).
    """
    logits = ops.cast(logits, "float32")
    lowest = ops.min(logits, axis=-1, keepdims=True) - 1.0
    return ops.where(_never_output_ids(logits, start_id), lowest, logits)


def _decode(model, encoder_token_ids, max_length, choose, start_id=START_ID, end_id=END_ID):
    """The loop shared by greedy search and sampling; `choose(logits (B, V))` picks tokens."""
    encoder_output, encoder_padding_mask = model.encode(encoder_token_ids)
    self_cache, cross_cache = model.initialize_cache(encoder_output, max_length)
    batch_size = ops.shape(encoder_token_ids)[0]
    # Column 0 holds the start token; generated tokens go to 1..max_length.
    tokens = ops.concatenate(
        [ops.full((batch_size, 1), start_id, "int32"), ops.zeros((batch_size, max_length), "int32")], axis=1
    )
    finished = ops.zeros((batch_size,), "bool")

    def cond(index, tokens, self_cache, cross_cache, finished):
        return ops.logical_and(index < max_length, ops.logical_not(ops.all(finished)))

    def body(index, tokens, self_cache, cross_cache, finished):
        token = ops.slice(tokens, (0, index), (batch_size, 1))  # (B, 1)
        logits, self_cache, cross_cache = model.call_with_cache(
            token, self_cache, cross_cache, index, encoder_padding_mask
        )
        next_token = ops.cast(choose(never_output(logits[:, 0, :], start_id)), "int32")  # (B,)
        next_token = ops.where(finished, PAD_ID, next_token)
        tokens = ops.slice_update(tokens, (0, index + 1), next_token[:, None])
        finished = ops.logical_or(finished, ops.equal(next_token, end_id))
        return index + 1, tokens, self_cache, cross_cache, finished

    loop_vars = (ops.convert_to_tensor(0, "int32"), tokens, self_cache, cross_cache, finished)
    _, tokens, _, _, _ = ops.while_loop(cond, body, loop_vars, maximum_iterations=max_length)
    return tokens[:, 1:]


def greedy_search(model, encoder_token_ids, max_length, start_id=START_ID, end_id=END_ID):
    """Translate a batch greedily with the key/value cache.

    The encoder runs once; each step feeds one token per sentence through
    `model.call_with_cache`, so a step costs one position, not a re-run of the
    prefix. Every sentence stops at its own end token; the loop stops when
    all have ended or after `max_length` tokens. Backend-neutral
    (`ops.while_loop`), so it compiles under `tf.function`/XLA or `jax.jit`.

    Args:
        model: a `keras_transformer.Transformer`.
        encoder_token_ids: `(B, S)` int source ids, 0-padded.
        max_length: the most tokens to generate (end token included).
        start_id, end_id: reserved ids.

    Returns:
        `(B, max_length)` int32 ids: each row's tokens up to and including
        its end token, then padding (0).
    """
    return _decode(model, encoder_token_ids, max_length, best_token, start_id, end_id)


def best_token(logits):
    """The index of each row's largest logit (the lowest on ties): `(B, V)` to `(B,)`.

    The argmax of an integer "is the maximum" mask: on TensorFlow, Keras's
    float argmax adds a sign-bit test (a bitwise and) that TFLite has no
    built-in op for, so a loop using it would not convert without Flex ops;
    `ops.top_k(logits, 1)` converts but is ~13% slower per token at batch 32
    under XLA on CPU (a sort).
    """
    is_best = ops.equal(logits, ops.max(logits, axis=-1, keepdims=True))  # (B, V)
    return ops.argmax(ops.cast(is_best, "int32"), axis=-1)


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """Scale `(B, V)` logits by `1 / temperature`, keep the `top_k` best and the
    smallest set whose probability reaches `top_p` (nucleus); others get the
    masked value."""
    logits = ops.divide(ops.convert_to_tensor(logits, "float32"), temperature)
    if top_k is not None:
        kth_best = ops.top_k(logits, top_k)[0][:, -1:]  # (B, 1)
        logits = ops.where(logits < kth_best, mask_value("float32"), logits)
    if top_p is not None and top_p < 1.0:
        sorted_logits, _ = ops.top_k(logits, ops.shape(logits)[-1])  # (B, V), descending
        probabilities = ops.softmax(sorted_logits, axis=-1)
        mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
        kept = ops.where(mass_before < top_p, sorted_logits, ops.max(sorted_logits))  # the first is always kept
        threshold = ops.min(kept, axis=-1, keepdims=True)
        logits = ops.where(logits < threshold, mask_value("float32"), logits)
    return logits


def sample(
    model,
    encoder_token_ids,
    max_length,
    seed_generator,
    temperature=1.0,
    top_k=None,
    top_p=None,
    start_id=START_ID,
    end_id=END_ID,
):
    """Sample each next token from the (filtered) softmax, for open generation.

    Args:
        model, encoder_token_ids, max_length: as in `greedy_search`.
        seed_generator: a `keras.random.SeedGenerator`; reseed it for
            reproducible samples.
        temperature: below 1 sharpens, above 1 flattens the distribution.
        top_k: sample among the `top_k` most likely tokens only (1: greedy).
        top_p: sample among the fewest tokens whose probability reaches
            `top_p` (nucleus sampling).

    Returns:
        `(B, max_length)` int32 ids, padded with 0 after each end token.
    """

    choose = sampler(seed_generator, temperature, top_k, top_p)
    return _decode(model, encoder_token_ids, max_length, choose, start_id, end_id)


def sampler(seed_generator, temperature=1.0, top_k=None, top_p=None):
    """`choose(logits (B, V)) -> (B,)` token ids drawn from the filtered softmax."""

    def choose(logits):
        logits = ops.where(_never_output_ids(logits, START_ID), mask_value("float32"), logits)
        logits = filter_logits(logits, temperature, top_k, top_p)
        return keras.random.categorical(logits, 1, seed=seed_generator)[:, 0]

    return choose
