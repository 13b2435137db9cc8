"""Beam search with GNMT's length penalty, batched, one compiled loop."""

import keras
from keras import ops

from keras_transformer.layers.masks import mask_value
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID


def length_penalty(length, alpha):
    """GNMT's `((5 + length) / 6) ** alpha` (Wu et al. 2016); 1 when `alpha` is 0."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def _repeat_beams(x, beam_size):
    """`(B, ...)` to `(B * K, ...)`, each row repeated `K` times."""
    return ops.repeat(x, beam_size, axis=0)


def _gather_beams(x, beam_indices, batch_size, beam_size):
    """Reorder `(B * K, ...)` rows by `beam_indices` `(B, K)`, within each sentence."""
    flat = beam_indices + ops.arange(batch_size)[:, None] * beam_size  # (B, K)
    return ops.take(x, ops.reshape(flat, (-1,)), axis=0)


def beam_search(
    model,
    encoder_token_ids,
    max_length,
    beam_size=4,
    alpha=0.6,
    start_id=START_ID,
    end_id=END_ID,
):
    """Beam search over the key/value cache (the paper: beam 4, alpha 0.6).

    Each step extends every live beam by every token, ranks the candidates
    of a sentence by `log P / ((5 + length) / 6) ** alpha`, and keeps the
    best `beam_size`; a beam that emitted the end token keeps its score and
    competes on. Caches are reordered with the surviving beams. The loop
    stops when every beam of every sentence has ended, or after `max_length`
    tokens.

    Args:
        model: a `keras_transformer.Transformer`.
        encoder_token_ids: `(B, S)` int source ids, 0-padded.
        max_length: the most tokens to generate (end token included).
        beam_size: `K`, beams per sentence.
        alpha: length penalty exponent (0: raw log-probabilities).

    Returns:
        `(token_ids, scores)`: `(B, K, max_length)` int32 n-best lists, best
        first, padded with 0 after each end token, and `(B, K)` float32
        length-normalised log-probabilities.
    """
    batch_size = ops.shape(encoder_token_ids)[0]
    encoder_output, encoder_padding_mask = model.encode(encoder_token_ids)
    encoder_output = _repeat_beams(encoder_output, beam_size)  # (B*K, S, d)
    encoder_padding_mask = _repeat_beams(encoder_padding_mask, beam_size)
    self_cache, cross_cache = model.initialize_cache(encoder_output, max_length)

    tokens = ops.concatenate(
        [
            ops.full((batch_size, beam_size, 1), start_id, "int32"),
            ops.zeros((batch_size, beam_size, max_length), "int32"),
        ],
        axis=2,
    )  # (B, K, 1 + T)
    # Only the first beam is live at the start, so the K beams differ.
    first = ops.concatenate([ops.zeros((1,)), ops.full((beam_size - 1,), mask_value("float32"))], axis=0)
    log_probs = ops.tile(first[None], (batch_size, 1))  # (B, K)
    lengths = ops.zeros((batch_size, beam_size), "int32")
    finished = ops.zeros((batch_size, beam_size), "bool")

    def cond(index, tokens, log_probs, lengths, finished, self_cache, cross_cache):
        return ops.logical_and(index < max_length, ops.logical_not(ops.all(finished)))

    def body(index, tokens, log_probs, lengths, finished, self_cache, cross_cache):
        token = ops.reshape(ops.slice(tokens, (0, 0, index), (batch_size, beam_size, 1)), (-1, 1))
        logits, self_cache, cross_cache = model.call_with_cache(
            token, self_cache, cross_cache, index, encoder_padding_mask
        )
        vocabulary_size = ops.shape(logits)[-1]
        step = ops.log_softmax(ops.cast(logits[:, 0, :], "float32"), axis=-1)
        step = ops.reshape(step, (batch_size, beam_size, vocabulary_size))  # (B, K, V)
        # A finished beam has one continuation, padding, at no cost.
        only_padding = ops.where(ops.arange(vocabulary_size) == PAD_ID, 0.0, mask_value("float32"))
        step = ops.where(finished[..., None], only_padding[None, None], step)
        candidate_log_probs = log_probs[..., None] + step  # (B, K, V)
        candidate_lengths = lengths + ops.cast(ops.logical_not(finished), "int32")  # (B, K)
        normalized = candidate_log_probs / length_penalty(candidate_lengths, alpha)[..., None]
        _, best = ops.top_k(ops.reshape(normalized, (batch_size, -1)), beam_size)  # (B, K)
        beam_indices = best // vocabulary_size
        next_token = ops.cast(best % vocabulary_size, "int32")

        def pick(x):  # (B, K, ...) rows of the surviving beams
            return ops.take_along_axis(x, ops.reshape(beam_indices, (batch_size, beam_size) + (1,) * (len(x.shape) - 2)), axis=1)

        log_probs = ops.take_along_axis(ops.reshape(candidate_log_probs, (batch_size, -1)), best, axis=1)
        lengths = pick(candidate_lengths)
        tokens = ops.take_along_axis(tokens, beam_indices[..., None], axis=1)
        tokens = ops.slice_update(tokens, (0, 0, index + 1), next_token[..., None])
        finished = ops.logical_or(pick(finished), ops.equal(next_token, end_id))
        self_cache = keras.tree.map_structure(
            lambda cache: _gather_beams(cache, beam_indices, batch_size, beam_size), self_cache
        )
        return index + 1, tokens, log_probs, lengths, finished, self_cache, cross_cache

    loop_vars = (ops.convert_to_tensor(0, "int32"), tokens, log_probs, lengths, finished, self_cache, cross_cache)
    _, tokens, log_probs, lengths, _, _, _ = ops.while_loop(cond, body, loop_vars, maximum_iterations=max_length)
    scores = log_probs / length_penalty(lengths, alpha)
    order = ops.argsort(-scores, axis=1)
    tokens = ops.take_along_axis(tokens[:, :, 1:], order[..., None], axis=1)
    return tokens, ops.take_along_axis(scores, order, axis=1)
