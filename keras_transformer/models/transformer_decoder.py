import keras
from keras import ops

from keras_transformer.layers.transformer_decoder_layer import TransformerDecoderLayer
from keras_transformer.models.stack_base import StackBase


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerDecoder(StackBase):
    """The decoder stack: `N` `TransformerDecoderLayer`s (section 3.1).

    The caches of all layers travel as tuples of `2N` tensors (layer `i`'s
    keys at `2i`, its values at `2i + 1`): self-attention `(B, T_max, h, d_k)`
    each, cross-attention `(B, S, h, d_k)` each. A step then writes one slice
    into each of its layer's two tensors and copies nothing else (stacking
    the layers into one tensor would copy the whole cache every step). The
    stacked form, `(B, 2N, T_max, h, d_k)` (`stack_cache`), is accepted too
    and returned as given: exported `decode_step` signatures use it, one
    fixed-shape tensor of rank 5, the most many TFLite kernels accept.

    Args:
        num_layers: `N`.
        intermediate_dim: `d_ff`.
        num_heads: `h`.
        **kwargs: any other `TransformerDecoderLayer` argument
            (`cross_attention=False` for a decoder-only model).

    Call arguments:
        decoder_sequence, encoder_sequence, decoder_padding_mask,
        decoder_attention_mask, encoder_padding_mask, encoder_attention_mask,
        use_causal_mask, training: as in `TransformerDecoderLayer`.
        self_attention_cache: `2N` tensors `(B, T_max, h, d_k)` from
            `initialize_self_attention_cache` (or them stacked).
        self_attention_cache_update_index: position of the first token of
            `decoder_sequence`.
        cross_attention_cache: `2N` tensors `(B, S, h, d_k)` from
            `compute_cross_attention_cache` (or them stacked).
        return_attention_scores: also return a list of per-layer dicts.

    Returns:
        `(B, T, d_model)`; with `self_attention_cache`, `(outputs,
        self_attention_cache, cross_attention_cache)`; attention weights last.

    Example:
    >>> decoder = keras_transformer.models.TransformerDecoder(2, 256, 4)
    >>> target, source = keras.random.normal((2, 7, 64)), keras.random.normal((2, 9, 64))
    >>> decoder(target, source).shape
    (2, 7, 64)
    """

    layer_class = TransformerDecoderLayer

    def compute_cross_attention_cache(self, encoder_sequence):
        """Project `encoder_sequence` once for every layer: `2N` `(B, S, h, d_k)` tensors."""
        caches = ()
        for layer in self.transformer_layers:
            caches += tuple(layer.cross_attention_layer.project_key_value(encoder_sequence))
        return caches

    def cache_shape(self, length):
        """The stacked cache of `length` positions without its batch axis: `(2N, length, h, d_k)`."""
        layer = self.transformer_layers[0].self_attention
        return (2 * self.num_layers, length, layer.num_heads, layer.key_dim)

    def initialize_self_attention_cache(self, batch_size, max_length):
        """`2N` zero tensors of shape `(B, T_max, h, d_k)`."""
        _, _, num_heads, key_dim = self.cache_shape(max_length)
        shape = (batch_size, max_length, num_heads, key_dim)
        return tuple(ops.zeros(shape, dtype=self.compute_dtype) for _ in range(2 * self.num_layers))

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        use_causal_mask=True,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        training=None,
    ):
        use_cache = self_attention_cache is not None
        stacked = use_cache and not isinstance(self_attention_cache, (tuple, list))
        if stacked:
            self_attention_cache = unstack_cache(self_attention_cache)
        cross_stacked = cross_attention_cache is not None and not isinstance(cross_attention_cache, (tuple, list))
        if cross_stacked:
            cross_attention_cache = unstack_cache(cross_attention_cache)
        outputs, all_scores, self_caches = decoder_sequence, [], ()
        for i, layer in enumerate(self.transformer_layers):
            cached = {}
            if use_cache:
                cached = {
                    "self_attention_cache": tuple(self_attention_cache[2 * i : 2 * i + 2]),
                    "self_attention_cache_update_index": self_attention_cache_update_index,
                }
            if cross_attention_cache is not None:
                cached["cross_attention_cache"] = tuple(cross_attention_cache[2 * i : 2 * i + 2])
            outputs = layer(
                outputs,
                encoder_sequence if cross_attention_cache is None else None,
                decoder_padding_mask=decoder_padding_mask,
                decoder_attention_mask=decoder_attention_mask,
                encoder_padding_mask=encoder_padding_mask,
                encoder_attention_mask=encoder_attention_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                **cached,
            )
            if use_cache:
                outputs, layer_cache, _, *rest = outputs
                self_caches += tuple(layer_cache)
            elif return_attention_scores:
                outputs, *rest = outputs
            if return_attention_scores:
                all_scores.append(rest[0])
        outputs = self._finalize(outputs)
        results = (outputs,)
        if use_cache:
            if cross_stacked:
                cross_attention_cache = stack_cache(cross_attention_cache)
            results += (stack_cache(self_caches) if stacked else self_caches, cross_attention_cache)
        if return_attention_scores:
            results += (all_scores,)
        return results[0] if len(results) == 1 else results


def stack_cache(cache):
    """`2N` `(B, T, h, d_k)` tensors as one `(B, 2N, T, h, d_k)` tensor."""
    return ops.stack(list(cache), axis=1)


def unstack_cache(cache):
    """One `(B, 2N, T, h, d_k)` tensor as a tuple of `2N` `(B, T, h, d_k)` tensors."""
    return tuple(cache[:, j] for j in range(cache.shape[1]))
