"""The paper's attention function, softmax(Q K^T / sqrt(d_k) + mask) V."""

import math

from keras import ops

from keras_transformer.layers.masks import mask_value


def attention_weights(query, key, mask=None, bias=None, scale=None):
    """`softmax(Q K^T * scale + bias)` with masked scores removed.

    Args:
        query: `(..., T, d_k)`.
        key: `(..., S, d_k)`.
        mask: boolean, broadcastable to `(..., T, S)`; `True` may attend.
        bias: additive scores broadcastable to `(..., T, S)` (e.g. relative
            position terms).
        scale: defaults to `1 / sqrt(d_k)`.

    Returns:
        `(..., T, S)` attention weights, rows summing to one.
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    # Scaling the query before the product keeps float16 scores in range.
    query = ops.multiply(query, ops.cast(scale, query.dtype))
    scores = ops.matmul(query, ops.swapaxes(key, -1, -2))  # (..., T, S)
    if bias is not None:
        scores = scores + ops.cast(bias, scores.dtype)
    # Softmax in float32 even under mixed precision.
    scores = ops.cast(scores, "float32")
    if mask is not None:
        scores = ops.where(ops.cast(mask, "bool"), scores, mask_value("float32"))
    return ops.cast(ops.softmax(scores, axis=-1), query.dtype)


def scaled_dot_product_attention(query, key, value, mask=None, bias=None, scale=None):
    """Scaled dot-product attention (Vaswani et al. 2017, eq. 1).

    Args:
        query: `(..., T, d_k)` queries.
        key: `(..., S, d_k)` keys.
        value: `(..., S, d_v)` values.
        mask: optional boolean mask broadcastable to `(..., T, S)`, `True`
            where a query may attend to a key.
        bias: optional additive score bias broadcastable to `(..., T, S)`.
        scale: score scale, `1 / sqrt(d_k)` by default.

    Returns:
        `(outputs, weights)`: `(..., T, d_v)` and `(..., T, S)`.

    Example:
    >>> q = keras.random.normal((2, 5, 16))
    >>> kv = keras.random.normal((2, 7, 16))
    >>> out, w = keras_transformer.layers.scaled_dot_product_attention(q, kv, kv)
    >>> out.shape, w.shape
    ((2, 5, 16), (2, 5, 7))
    """
    weights = attention_weights(query, key, mask=mask, bias=bias, scale=scale)
    return ops.matmul(weights, value), weights
