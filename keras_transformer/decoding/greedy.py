"""Greedy search: the arg-max token at every step, one compiled loop."""

from keras import ops

from keras_transformer.layers.masks import END_ID, PAD_ID, START_ID


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
        next_token = ops.cast(ops.argmax(logits[:, 0, :], axis=-1), "int32")  # (B,)
        next_token = ops.where(finished, PAD_ID, next_token)
        tokens = ops.slice_update(tokens, (0, index + 1), next_token[:, None])
        finished = ops.logical_or(finished, ops.equal(next_token, end_id))
        return index + 1, tokens, self_cache, cross_cache, finished

    loop_vars = (ops.convert_to_tensor(0, "int32"), tokens, self_cache, cross_cache, finished)
    _, tokens, _, _, _ = ops.while_loop(cond, body, loop_vars, maximum_iterations=max_length)
    return tokens[:, 1:]
