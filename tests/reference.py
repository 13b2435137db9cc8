"""NumPy references of the paper's formulas, written from the equations."""

import numpy as np


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def attention(q, k, v, mask=None, bias=None):
    """softmax(Q K^T / sqrt(d_k) + bias, masked) V over the last two axes."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = np.where(mask, scores, -1e30)
    weights = softmax(scores)
    return weights @ v, weights


def multi_head_attention(layer, query, value, mask=None, causal=False):
    """Concat(head_1..head_h) W^O with head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i)."""
    n, h = layer.num_heads, layer.key_dim

    def project(dense, x):
        w, b = (np.asarray(t) for t in dense.get_weights())
        y = x @ w + b
        return y.reshape(x.shape[0], x.shape[1], n, h).transpose(0, 2, 1, 3)  # (B, N, T, H)

    q, k, v = project(layer.query_dense, query), project(layer.key_dense, value), project(layer.value_dense, value)
    t, s = query.shape[1], value.shape[1]
    full_mask = np.ones((query.shape[0], 1, t, s), bool)
    if mask is not None:
        full_mask &= np.asarray(mask, bool)[:, None]
    if causal:
        full_mask &= np.tril(np.ones((t, s), bool))[None, None]
    bias = None
    relative_values = None
    if layer.max_relative_position is not None:
        kmax = layer.max_relative_position
        index = np.clip(np.arange(s)[None, :] - np.arange(t)[:, None], -kmax, kmax) + kmax
        relative_keys = np.asarray(layer.relative_key_embedding.embeddings)[index]  # (T, S, H)
        relative_values = np.asarray(layer.relative_value_embedding.embeddings)[index]
        bias = np.einsum("bnth,tsh->bnts", q, relative_keys) / np.sqrt(h)
    out, weights = attention(q, k, v, full_mask, bias)
    if relative_values is not None:
        out = out + np.einsum("bnts,tsh->bnth", weights, relative_values)
    out = out.transpose(0, 2, 1, 3).reshape(query.shape[0], t, n * h)
    w, b = (np.asarray(x) for x in layer.output_dense.get_weights())
    return out @ w + b, weights


def sinusoid_table(length, dim, base=10000.0):
    """PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(pos / base^(2i/d))."""
    table = np.zeros((length, dim))
    for pos in range(length):
        for i in range(0, dim, 2):
            table[pos, i] = np.sin(pos / base ** (i / dim))
            if i + 1 < dim:
                table[pos, i + 1] = np.cos(pos / base ** (i / dim))
    return table


def concatenated_sinusoid_table(length, dim, base=10000.0):
    """Marian's table (`MarianSinusoidalPositionalEmbedding._init_weight` in transformers), written as it is there:
    angles `pos / base^(2 (j // 2) / dim)`, the sines of the even columns first, then the cosines of the odd ones."""
    angles = np.array([[pos / np.power(base, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(length)])
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    table = np.zeros((length, dim))
    table[:, :sentinel] = np.sin(angles[:, 0::2])
    table[:, sentinel:] = np.cos(angles[:, 1::2])
    return table


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta
