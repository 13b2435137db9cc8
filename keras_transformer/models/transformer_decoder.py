import keras
from keras import ops

from keras_transformer.layers.transformer_decoder_layer import TransformerDecoderLayer
from keras_transformer.models.stack_base import StackBase


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerDecoder(StackBase):
    """The decoder stack: `N` `TransformerDecoderLayer`s (section 3.1).

    Caches of all layers travel as one tensor each, concatenated on axis 1
    (layer `i`'s keys at `2i`, its values at `2i + 1`): self-attention
    `(B, 2N, T_max, h, d_k)` and cross-attention `(B, 2N, S, h, d_k)`, so a
    decoding step has fixed-shape inputs and outputs (XLA, TFLite) of rank 5,
    the most many TFLite kernels accept.

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
        self_attention_cache: `(B, 2N, T_max, h, d_k)`.
        self_attention_cache_update_index: position of the first token of
            `decoder_sequence`.
        cross_attention_cache: `(B, 2N, S, h, d_k)` from
            `compute_cross_attention_cache`.
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
        """Project `encoder_sequence` once for every layer: `(B, 2N, S, h, d_k)`."""
        return ops.concatenate(
            [layer.cross_attention_layer.compute_cache(encoder_sequence) for layer in self.transformer_layers],
            axis=1,
        )

    def initialize_self_attention_cache(self, batch_size, max_length):
        """Zeros of shape `(B, 2N, T_max, h, d_k)`."""
        layer = self.transformer_layers[0].self_attention
        return ops.zeros(
            (batch_size, 2 * self.num_layers, max_length, layer.num_heads, layer.key_dim),
            dtype=self.compute_dtype,
        )

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
        outputs, all_scores, self_caches = decoder_sequence, [], []
        for i, layer in enumerate(self.transformer_layers):
            cached = {}
            if use_cache:
                cached = {
                    "self_attention_cache": self_attention_cache[:, 2 * i : 2 * i + 2],
                    "self_attention_cache_update_index": self_attention_cache_update_index,
                }
            if cross_attention_cache is not None:
                cached["cross_attention_cache"] = cross_attention_cache[:, 2 * i : 2 * i + 2]
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
                self_caches.append(layer_cache)
            elif return_attention_scores:
                outputs, *rest = outputs
            if return_attention_scores:
                all_scores.append(rest[0])
        outputs = self._finalize(outputs)
        results = (outputs,)
        if use_cache:
            results += (ops.concatenate(self_caches, axis=1), cross_attention_cache)
        if return_attention_scores:
            results += (all_scores,)
        return results[0] if len(results) == 1 else results
