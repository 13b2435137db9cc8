"""Attention masks.

Convention everywhere in the package: `True` (or 1) means "may attend".
Padding masks have shape `(B, T)`, attention masks `(B, T, S)`; masks are
combined with a logical AND. Masked attention scores are replaced by a large
negative *finite* number (see `mask_value`), safe in float16.
"""

import ml_dtypes
from keras import ops

from keras_transformer.vocabulary import PAD_ID


def mask_value(dtype):
    """The score given to masked positions: large, negative and finite.

    It is 70% of the most negative number `dtype` holds (about -4.6e4 in
    float16, -2.4e38 in float32), so softmax gives masked positions a weight of
    exactly zero while no `-inf` or NaN can appear, even when a whole row is
    masked.
    """
    return float(-0.7 * ml_dtypes.finfo(str(dtype)).max)


def padding_mask(token_ids, pad_id=PAD_ID):
    """`(B, T)` boolean mask, `True` where `token_ids != pad_id`."""
    return ops.not_equal(token_ids, pad_id)


def causal_mask(query_length, key_length=None, start_index=0):
    """`(T, S)` look-ahead mask: query `i` may see keys `j <= i + start_index`.

    Args:
        query_length: T, the number of query positions.
        key_length: S, the number of key positions. Defaults to `query_length`.
        start_index: the absolute position of the first query (non-zero when
            decoding step by step into a key/value cache). May be a tensor.
    """
    key_length = query_length if key_length is None else key_length
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(
        start_index, "int32"
    )
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.greater_equal(
        ops.expand_dims(query_positions, 1), ops.expand_dims(key_positions, 0)
    )


def combine_masks(*masks):
    """AND of broadcastable boolean masks; `None` entries are skipped.

    Returns `None` when every mask is `None`.
    """
    result = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        result = mask if result is None else ops.logical_and(result, mask)
    return result


def full_attention_mask(mask, query, key):
    """`mask` broadcast to `(B, 1, T, S)` for `query` `(B, T, N, H)` and `key` `(B, S, N, H)`.

    Fused attention kernels take a mask (or bias) only in this layout:
    cuDNN's, which `keras.ops.dot_product_attention` tries first on a GPU
    under JAX, refuses a `(B, 1, 1, S)` padding mask ("Bias must have same
    seq length as QKV") and the backend falls back to the unfused attention,
    logging a traceback per call. On other backends the broadcast is free
    (the scores are that shape anyway).
    """
    shape = (
        query.shape[0] if query.shape[0] is not None else ops.shape(query)[0],
        1,
        query.shape[1] if query.shape[1] is not None else ops.shape(query)[1],
        key.shape[1] if key.shape[1] is not None else ops.shape(key)[1],
    )
    return ops.broadcast_to(ops.cast(mask, "bool"), shape)


def check_mask_rank(mask, rank, name):
    """Raise a `ValueError` if `mask` is given and does not have `rank` dims."""
    if mask is not None and len(mask.shape) != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} "
            f"({'(B, T)' if rank == 2 else '(B, T, S)'}). "
            f"Received: {name}.shape={tuple(mask.shape)}"
        )


def implicit_mask(inputs):
    """The Keras mask carried by `inputs` (e.g. from `mask_zero=True`)."""
    return getattr(inputs, "_keras_mask", None)


def merge_padding_and_attention_mask(inputs, padding_mask=None, attention_mask=None):
    """Build the attention mask for self-attention over `inputs`.

    Explicit masks win over Keras's implicit mask: the implicit mask of
    `inputs` is used only when `padding_mask` is `None`.

    Args:
        inputs: `(B, T, ...)` tensor, possibly carrying a Keras mask.
        padding_mask: `(B, S)` key padding mask.
        attention_mask: `(B, T, S)` attention mask.

    Returns:
        A boolean mask broadcastable to `(B, T, S)`, or `None`.
    """
    check_mask_rank(padding_mask, 2, "padding_mask")
    check_mask_rank(attention_mask, 3, "attention_mask")
    if padding_mask is None:
        padding_mask = implicit_mask(inputs)
    if padding_mask is not None:
        padding_mask = ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)
    return combine_masks(padding_mask, attention_mask)
