"""Multi-head attention, the paper's section 3.2.2, as one layer.

Longer than the house's ~300 lines on purpose: like Keras's own
`MultiHeadAttention`, the layer keeps its overridable steps together (the
projections, the fused `dot_product_attention` path and the explicit one
that can return weights, the cached single-query decoding step, relative and
rotary positions), since they share the same projections and caches.
"""

import math

import keras
from keras import ops

from keras_transformer.layers.masks import (
    causal_mask,
    check_mask_rank,
    combine_masks,
    full_attention_mask,
    implicit_mask,
    mask_value,
)
from keras_transformer.layers.relative_position_embedding import RelativePositionEmbedding
from keras_transformer.layers.rotary_embedding import RotaryEmbedding
from keras_transformer.layers.scaled_dot_product_attention import attention_weights
from keras_transformer.checks import check_positive_int, check_rate
from keras_transformer.layers.utils import clone_initializer, dense_2d


@keras.saving.register_keras_serializable(package="keras_transformer")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention (Vaswani et al. 2017, section 3.2.2).

    `MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O` with
    `head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`. The heads are computed
    together: one projection to `h * d_k` features, split into `(h, d_k)`.

    When attention weights are not asked for and attention dropout is not
    active, the layer calls the fused `keras.ops.dot_product_attention`;
    otherwise it computes the weights explicitly (same result).

    Incremental decoding uses a fixed-shape cache `(B, 2, S_max, h, d_k)`
    holding projected keys and values, or the same as a `(keys, values)`
    pair of `(B, S_max, h, d_k)` tensors (what the decoder stack uses: no
    slicing or stacking per step), updated with `ops.slice_update` so the
    layer compiles under XLA and converts to TFLite without dynamic shapes.

    Args:
        num_heads: `h`, the number of heads.
        key_dim: `d_k`, the size of each query/key head.
        value_dim: `d_v`, the size of each value head. Defaults to `key_dim`.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_dim: size of the output projection. Defaults to the query's
            last dimension.
        max_relative_position: if set, adds Shaw et al. (2018) relative
            position terms with this clipping distance `k` to scores and
            values.
        use_rotary_embedding: if True, rotates queries and keys with RoPE.
        rotary_max_wavelength: RoPE frequency base.
        kernel_initializer, bias_initializer: initializers of the projections.

    Call arguments:
        query: `(B, T, d_query)`.
        value: `(B, S, d_value)`; defaults to `query` (self-attention).
        key: `(B, S, d_key)`; defaults to `value`.
        attention_mask: boolean `(B, T, S)` (dims of 1 broadcast), `True`
            where a query may attend to a key. Wins over Keras's implicit mask
            of `value`, which is used only when this is `None`.
        use_causal_mask: also mask keys after each query's position.
        return_attention_scores: also return `(B, h, T, S)` weights.
        cache: `(B, 2, S_max, h, d_k)` keys and values from earlier steps,
            or a `(keys, values)` pair; returned in the form given.
        cache_update_index: where the new keys/values of `key`/`value` go in
            `cache` (also the position of the first query). If `None` while
            `cache` is given, the cache is used as is and `key`/`value` are
            ignored (cross-attention over a cached encoder output).
        training: whether attention dropout is active.

    Returns:
        `outputs` `(B, T, output_dim)`; with `cache`, `(outputs, cache)`; with
        `return_attention_scores`, the weights come last.

    Example:
    >>> mha = keras_transformer.layers.MultiHeadAttention(num_heads=8, key_dim=64)
    >>> x = keras.random.normal((2, 10, 512))
    >>> mha(x, x, use_causal_mask=True).shape
    (2, 10, 512)
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_dim=None,
        max_relative_position=None,
        use_rotary_embedding=False,
        rotary_max_wavelength=10000,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int(num_heads, "num_heads")
        check_positive_int(key_dim, "key_dim")
        check_positive_int(value_dim, "value_dim", allow_none=True)
        check_positive_int(output_dim, "output_dim", allow_none=True)
        check_positive_int(max_relative_position, "max_relative_position", allow_none=True)
        check_rate(dropout, "dropout")
        if max_relative_position is not None and use_rotary_embedding:
            raise ValueError(
                "Choose one of relative positions and rotary embeddings. Received: "
                f"max_relative_position={max_relative_position}, use_rotary_embedding=True"
            )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.output_dim = output_dim
        self.max_relative_position = max_relative_position
        self.use_rotary_embedding = use_rotary_embedding
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self.query_dense = self._dense(self.num_heads * self.key_dim, "query")
        self.query_dense.build(query_shape)
        self.key_dense = self._dense(self.num_heads * self.key_dim, "key")
        self.key_dense.build(key_shape)
        self.value_dense = self._dense(self.num_heads * self.value_dim, "value")
        self.value_dense.build(value_shape)
        self.output_dense = self._dense(self.output_dim or query_shape[-1], "attention_output")
        self.output_dense.build(tuple(query_shape[:-1]) + (self.num_heads * self.value_dim,))
        if self.max_relative_position is not None:
            self.relative_key_embedding = RelativePositionEmbedding(
                self.max_relative_position,
                self.key_dim,
                initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="relative_key_embedding",
            )
            self.relative_key_embedding.build()
            self.relative_value_embedding = RelativePositionEmbedding(
                self.max_relative_position,
                self.value_dim,
                initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="relative_value_embedding",
            )
            self.relative_value_embedding.build()
        if self.use_rotary_embedding:
            self.rotary_embedding = RotaryEmbedding(
                self.rotary_max_wavelength, dtype=self.dtype_policy, name="rotary_embedding"
            )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    @staticmethod
    def _length(x):
        """`T`: static when known, so reshapes stay constant (see `dense_2d`)."""
        return x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]

    def _split_heads(self, x, head_dim):
        return ops.reshape(x, (-1, self._length(x), self.num_heads, head_dim))  # (B, T, N, H)

    def _merge_heads(self, x):
        return ops.reshape(x, (-1, self._length(x), self.num_heads * self.value_dim))  # (B, T, N*H)

    def _project(self, inputs, layers):
        """`[layer(inputs) for layer in layers]`, as one matmul over their joined kernels.

        Fewer, larger matmuls run faster (fused Q/K/V for self-attention, K/V
        for cross-attention); the weights stay separate variables. Quantized
        or LoRA-enabled projections are applied one by one.
        """
        plain = all(
            layer.quantization_mode is None and not layer.lora_enabled and layer.activation is keras.activations.linear
            for layer in layers
        )
        if len(layers) == 1 or not plain:
            return [dense_2d(layer, inputs) for layer in layers]
        length = self._length(inputs)
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))  # (B*T, d)
        kernel = ops.concatenate([layer.kernel for layer in layers], axis=-1)  # (d, sum of units)
        outputs = ops.matmul(flat, ops.cast(kernel, flat.dtype))
        if self.use_bias:
            outputs = outputs + ops.cast(ops.concatenate([layer.bias for layer in layers], axis=0), flat.dtype)
        sizes = [layer.units for layer in layers]
        splits = ops.split(outputs, [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)], axis=-1)
        return [ops.reshape(x, (-1, length, size)) for x, size in zip(splits, sizes)]  # (B, T, units)

    def project_key_value(self, value, key=None, start_index=0):
        """Project `key`/`value` to `(B, S, N, H)` heads (rotated if RoPE)."""
        if key is None:
            k, v = self._project(value, (self.key_dense, self.value_dense))
        else:
            k, v = dense_2d(self.key_dense, key), dense_2d(self.value_dense, value)
        k = self._split_heads(k, self.key_dim)  # (B, S, N, H)
        v = self._split_heads(v, self.value_dim)  # (B, S, N, H)
        if self.use_rotary_embedding:
            k = self.rotary_embedding(k, start_index=start_index)
        return k, v

    def compute_cache(self, value, key=None):
        """Keys and values of a whole sequence as a `(B, 2, S, N, H)` cache."""
        if not self.built:
            raise ValueError(f"Layer {self.name} has no weights yet: call or build it before `compute_cache`.")
        return ops.stack(self.project_key_value(value, key), axis=1)

    def _use_fused(self, return_attention_scores, training):
        """Whether `ops.dot_product_attention` computes exactly what is asked.

        It returns no weights, has no relative-position terms, no attention
        dropout, and (on JAX) needs value heads as large as key heads.
        """
        return not (
            return_attention_scores
            or self.max_relative_position is not None
            or (training and self.dropout > 0)
            or self.value_dim != self.key_dim
        )

    def call(
        self,
        query,
        value=None,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        cache=None,
        cache_update_index=None,
        training=None,
    ):
        check_mask_rank(attention_mask, 3, "attention_mask")
        if value is None:
            value = query
        if attention_mask is None and cache is None:
            value_mask = implicit_mask(value)
            if value_mask is not None:
                attention_mask = ops.expand_dims(value_mask, 1)  # (B, 1, S)
        start_index = 0 if cache_update_index is None else cache_update_index

        new_keys = cache is None or cache_update_index is not None
        if new_keys and key is None and value is query:  # self-attention: Q, K and V in one matmul
            q, k_new, v_new = self._project(query, (self.query_dense, self.key_dense, self.value_dense))
            k_new = self._split_heads(k_new, self.key_dim)  # (B, T, N, H)
            v_new = self._split_heads(v_new, self.value_dim)
            if self.use_rotary_embedding:
                k_new = self.rotary_embedding(k_new, start_index=start_index)
        else:
            q = dense_2d(self.query_dense, query)
            if new_keys:
                k_new, v_new = self.project_key_value(value, key, start_index)  # (B, S, N, H)
        q = self._split_heads(q, self.key_dim)  # (B, T, N, H)
        if self.use_rotary_embedding:
            q = self.rotary_embedding(q, start_index=start_index)
        pair = isinstance(cache, (tuple, list))
        if cache is None:
            k, v = k_new, v_new  # (B, S, N, H)
        elif cache_update_index is None:
            k, v = cache if pair else (cache[:, 0], cache[:, 1])  # (B, S_max, N, H)
        else:
            k, v = cache if pair else (cache[:, 0], cache[:, 1])
            k = ops.slice_update(k, (0, cache_update_index, 0, 0), k_new)  # (B, S_max, N, H)
            v = ops.slice_update(v, (0, cache_update_index, 0, 0), v_new)
            cache = (k, v) if pair else ops.stack([k, v], axis=1)  # (B, 2, S_max, N, H)

        query_length, key_length = ops.shape(q)[1], ops.shape(k)[1]
        mask = attention_mask
        if use_causal_mask:
            causal = causal_mask(query_length, key_length, start_index)[None]  # (1, T, S)
            mask = combine_masks(mask, causal)
        if mask is not None:
            mask = ops.expand_dims(ops.cast(mask, "bool"), 1)  # (B, 1, T, S)

        scale = 1.0 / math.sqrt(self.key_dim)
        scores = None
        if cache is not None and q.shape[1] == 1 and self._use_fused(return_attention_scores, training):
            outputs = self._attend_one_query(q, k, v, mask, scale)  # a decoding step
        elif self._use_fused(return_attention_scores, training):
            if mask is not None:
                mask = full_attention_mask(mask, q, k)  # (B, 1, T, S)
            outputs = ops.dot_product_attention(q, k, v, mask=mask, scale=scale)  # (B, T, N, H)
        else:
            outputs, scores = self._compute_attention(q, k, v, mask, scale, start_index, training)
        outputs = dense_2d(self.output_dense, self._merge_heads(outputs))  # (B, T, d_out)

        results = (outputs,)
        if cache is not None:
            results += (cache,)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    def _attend_one_query(self, q, k, v, mask, scale):
        """Attention of one query per row over a `(B, S, N, H)` cache, as products and sums.

        A dot product would first transpose the whole cache to put the heads
        before the positions (under XLA, that copy was a fifth of a decoding
        step); broadcasting the query over the cache and summing reads the
        cache in place.
        """
        q = ops.multiply(q, ops.cast(scale, q.dtype))  # (B, 1, N, H)
        scores = ops.cast(ops.sum(q * k, axis=-1), "float32")  # (B, S, N)
        if mask is not None:  # (B, 1, 1, S) -> (B, S, 1)
            scores = ops.where(ops.expand_dims(mask[:, 0, 0, :], -1), scores, mask_value("float32"))
        # Softmax over the positions (axis 1), written out: an axis-1 softmax transposes on TensorFlow.
        scores = ops.exp(scores - ops.max(scores, axis=1, keepdims=True))
        weights = ops.cast(scores / ops.sum(scores, axis=1, keepdims=True), v.dtype)  # (B, S, N)
        return ops.sum(weights[..., None] * v, axis=1, keepdims=True)  # (B, 1, N, H)

    def _compute_attention(self, q, k, v, mask, scale, start_index, training):
        """Explicit attention returning `(B, T, N, H)` outputs and weights."""
        q = ops.transpose(q, (0, 2, 1, 3))  # (B, N, T, H)
        k = ops.transpose(k, (0, 2, 1, 3))  # (B, N, S, H)
        v = ops.transpose(v, (0, 2, 1, 3))  # (B, N, S, H)
        bias = relative_values = None
        if self.max_relative_position is not None:
            query_positions = ops.arange(ops.shape(q)[2]) + start_index
            key_positions = ops.arange(ops.shape(k)[2])
            relative_keys = self.relative_key_embedding(query_positions, key_positions)  # (T, S, H)
            relative_values = self.relative_value_embedding(query_positions, key_positions)
            bias = ops.einsum("bnth,tsh->bnts", q, relative_keys) * scale  # (B, N, T, S)
        weights = attention_weights(q, k, mask=mask, bias=bias, scale=scale)  # (B, N, T, S)
        dropped = self.dropout_layer(weights, training=training)
        outputs = ops.matmul(dropped, v)  # (B, N, T, H)
        if relative_values is not None:
            outputs = outputs + ops.einsum("bnts,tsh->bnth", dropped, relative_values)
        return ops.transpose(outputs, (0, 2, 1, 3)), weights  # (B, T, N, H)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_dim": self.output_dim,
                "max_relative_position": self.max_relative_position,
                "use_rotary_embedding": self.use_rotary_embedding,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
