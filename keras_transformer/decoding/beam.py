"""Beam search with GNMT's length penalty, batched, one compiled loop."""

import keras
from keras import ops

from keras_transformer.decoding.greedy import never_output
from keras_transformer.vocabulary import END_ID, START_ID

_EMPTY = -1e9  # the score of an empty slot: below any sequence's, finite in float32
LENGTH_PENALTY_FORMS = ("gnmt", "length")


def check_length_penalty_form(form):
    """`form` must be one of `LENGTH_PENALTY_FORMS`; otherwise a `ValueError` naming them."""
    if not isinstance(form, str) or form not in LENGTH_PENALTY_FORMS:
        raise ValueError(
            f"`length_penalty_form` must be one of {LENGTH_PENALTY_FORMS}. Received: length_penalty_form={form!r}"
        )


def length_penalty(length, alpha, form="gnmt"):
    """What a hypothesis's log-probability is divided by; 1 when `alpha` is 0.

    `form="gnmt"`: `((5 + length) / 6) ** alpha` (Wu et al. 2016, the
    paper's setting; CTranslate2's `length_penalty` by default);
    `form="length"`: `length ** alpha`, as transformers' `length_penalty`,
    fairseq's `lenpen` and CTranslate2 with `normalize_scores=True` rank
    hypotheses. `length` counts the generated tokens, end token included.
    """
    check_length_penalty_form(form)
    length = ops.cast(length, "float32")
    return ops.power((5.0 + length) / 6.0 if form == "gnmt" else length, alpha)


def _repeat_beams(x, beam_size):
    """`(B, ...)` to `(B * K, ...)`, each row repeated `K` times."""
    return ops.repeat(x, beam_size, axis=0)


def _beam_rows(beam_indices, batch_size, beam_size):
    """`(B * K,)` rows of a `(B * K, ...)` tensor holding the beams `beam_indices` `(B, K)` of each sentence."""
    return ops.reshape(beam_indices + ops.arange(batch_size)[:, None] * beam_size, (-1,))


def beam_search(
    model,
    encoder_token_ids,
    max_length,
    beam_size=4,
    alpha=0.6,
    start_id=START_ID,
    end_id=END_ID,
    exact_stop=False,
    length_penalty_form="gnmt",
):
    """Beam search over the key/value cache (the paper: beam 4, alpha 0.6).

    Each sentence keeps `beam_size` live beams and up to `beam_size`
    finished hypotheses, as fairseq and OpenNMT do, so a hypothesis that
    has ended no longer takes a live beam's place. Each step extends every
    live beam by every token and ranks the candidates by log-probability
    (the live beams all have the same length): end-token candidates among
    the best `beam_size` join the finished ones, scored
    `log P / ((5 + length) / 6) ** alpha` (or `log P / length ** alpha`,
    `length_penalty_form`); the best `beam_size` that do not
    end stay live, and the caches are reordered with them. A sentence is
    done once it holds `beam_size` finished hypotheses and its best live
    beam scores no better than the worst of them at its current length
    (exact for `alpha=0`: log-probabilities only fall); its n-best list is
    then fixed, so it does not depend on the other sentences of the batch.
    With `exact_stop=True` the best live beam is instead scored as if it
    kept its log-probability up to `max_length`, the best it could reach
    (tensor2tensor's bound), so stopping never changes the result: the
    n-best lists are those of running every beam to `max_length`. With
    `alpha > 0` that finds the longer hypotheses a large alpha favours,
    at the cost of more steps.
    The loop stops when every sentence is done, or after `max_length`
    tokens, where the live beams of the sentences not done compete with
    their finished hypotheses by the same score. With `beam_size=1` this
    is greedy search.

    Args:
        model: a `keras_transformer.Transformer`.
        encoder_token_ids: `(B, S)` int source ids, 0-padded.
        max_length: the most tokens to generate (end token included).
        beam_size: `K`, beams per sentence.
        alpha: length penalty exponent (0: raw log-probabilities).
        exact_stop: stop a sentence only once no live beam can beat its
            finished hypotheses at any length up to `max_length` (the
            same as the default when `alpha <= 0`).
        length_penalty_form: `"gnmt"` (the default) or `"length"`
            (transformers' form: `num_beams=K, length_penalty=alpha` there
            is `beam_size=K, alpha=alpha, length_penalty_form="length"`
            here); see `length_penalty`.

    Returns:
        `(token_ids, scores)`: `(B, K, max_length)` int32 n-best lists, best
        first, padded with 0 after each end token, and `(B, K)` float32
        length-normalised log-probabilities.
    """
    check_length_penalty_form(length_penalty_form)
    penalty = lambda length: length_penalty(length, alpha, length_penalty_form)  # noqa: E731
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
    first = ops.concatenate([ops.zeros((1,)), ops.full((beam_size - 1,), _EMPTY)], axis=0)
    log_probs = ops.tile(first[None], (batch_size, 1))  # (B, K), of the live beams
    finished_tokens = ops.zeros_like(tokens)  # (B, K, 1 + T)
    finished_scores = ops.full((batch_size, beam_size), _EMPTY)  # (B, K), best first
    finished = ops.zeros((batch_size, beam_size), "bool")  # which finished slots hold a hypothesis
    done = ops.zeros((batch_size, 1), "bool")
    # The length at which the best live beam is compared with the finished ones: the penalty's
    # largest divisor to come under `exact_stop` (it grows with length when alpha > 0), else the current one.
    bound_at_max_length = exact_stop and alpha > 0

    def cond(index, tokens, log_probs, finished_tokens, finished_scores, finished, done, self_cache, cross_cache):
        return ops.logical_and(index < max_length, ops.logical_not(ops.all(done)))

    def body(index, tokens, log_probs, finished_tokens, finished_scores, finished, done, self_cache, cross_cache):
        token = ops.reshape(ops.slice(tokens, (0, 0, index), (batch_size, beam_size, 1)), (-1, 1))
        logits, self_cache, cross_cache = model.call_with_cache(
            token, self_cache, cross_cache, index, encoder_padding_mask
        )
        vocabulary_size = ops.shape(logits)[-1]
        # The model's own log-probabilities (scores are the sequences'), with padding and start ranked last.
        step = never_output(ops.log_softmax(ops.cast(logits[:, 0, :], "float32"), axis=-1), start_id)
        candidates = log_probs[..., None] + ops.reshape(step, (batch_size, beam_size, vocabulary_size))
        top_log_probs, top = ops.top_k(ops.reshape(candidates, (batch_size, -1)), 2 * beam_size)  # (B, 2K)
        beam_indices = top // vocabulary_size
        next_token = ops.cast(top % vocabulary_size, "int32")
        top_tokens = ops.take_along_axis(tokens, beam_indices[..., None], axis=1)  # (B, 2K, 1 + T)
        top_tokens = ops.slice_update(top_tokens, (0, 0, index + 1), next_token[..., None])
        ends = ops.equal(next_token, end_id)

        # The K best candidates that do not end stay live (at most K of the 2K end).
        _, live = ops.top_k(ops.where(ends, 2 * _EMPTY, top_log_probs), beam_size)  # (B, K) of the 2K
        log_probs = ops.take_along_axis(top_log_probs, live, axis=1)
        tokens = ops.take_along_axis(top_tokens, live[..., None], axis=1)
        rows = _beam_rows(ops.take_along_axis(beam_indices, live, axis=1), batch_size, beam_size)
        self_cache = keras.tree.map_structure(lambda cache: ops.take(cache, rows, axis=0), self_cache)

        # Those that end among the K best join the finished ones, unless their sentence is done.
        new = ops.logical_and(ends, ops.arange(2 * beam_size)[None] < beam_size)
        new = ops.logical_and(ops.logical_and(new, ops.logical_not(done)), top_log_probs > _EMPTY / 2)
        new_scores = ops.where(new, top_log_probs / penalty(index + 1), _EMPTY)
        finished_scores, kept = ops.top_k(ops.concatenate([finished_scores, new_scores], axis=1), beam_size)
        finished = ops.take_along_axis(ops.concatenate([finished, new], axis=1), kept, axis=1)
        finished_tokens = ops.take_along_axis(
            ops.concatenate([finished_tokens, top_tokens], axis=1), kept[..., None], axis=1
        )
        bound_length = max_length if bound_at_max_length else index + 1
        best_live = log_probs[:, :1] / penalty(bound_length)  # (B, 1)
        full = ops.all(finished, axis=1, keepdims=True)
        done = ops.logical_or(done, ops.logical_and(full, best_live <= finished_scores[:, -1:]))
        return index + 1, tokens, log_probs, finished_tokens, finished_scores, finished, done, self_cache, cross_cache

    loop_vars = (
        ops.convert_to_tensor(0, "int32"),
        tokens,
        log_probs,
        finished_tokens,
        finished_scores,
        finished,
        done,
        self_cache,
        cross_cache,
    )
    index, tokens, log_probs, finished_tokens, finished_scores, _, done, _, _ = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    # Cut at max_length, the live beams of sentences not done compete by the same score.
    live_scores = log_probs / penalty(index)
    not_live = ops.logical_or(done, log_probs <= _EMPTY / 2)
    live_scores = ops.where(not_live, _EMPTY, live_scores)
    scores, order = ops.top_k(ops.concatenate([finished_scores, live_scores], axis=1), beam_size)
    tokens = ops.take_along_axis(ops.concatenate([finished_tokens, tokens], axis=1), order[..., None], axis=1)
    return tokens[:, :, 1:], scores
