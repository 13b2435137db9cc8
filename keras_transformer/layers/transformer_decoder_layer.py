import keras
from keras import ops

from keras_transformer.layers.masks import check_mask_rank, combine_masks, merge_padding_and_attention_mask
from keras_transformer.layers.transformer_layer_base import TransformerLayerBase


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerDecoderLayer(TransformerLayerBase):
    """One decoder layer (section 3.1).

    Masked (causal) self-attention, then cross-attention over the encoder
    output, then feed-forward; each wrapped by `Residual` (Add & Norm).
    With `cross_attention=False` it is the block of a decoder-only language
    model (GPT-like).

    Args:
        intermediate_dim, num_heads, dropout, attention_dropout,
        activation_dropout, activation, layer_norm_epsilon, normalize_first,
        max_relative_position, use_rotary_embedding, rotary_max_wavelength,
        kernel_initializer, bias_initializer: as in
            `TransformerEncoderLayer`. Relative and rotary positions apply
            to self-attention only.
        cross_attention: whether the layer attends to an encoder output.

    Call arguments:
        decoder_sequence: `(B, T, d_model)`.
        encoder_sequence: `(B, S, d_enc)`, required with cross-attention
            unless `cross_attention_cache` holds its keys and values.
        decoder_padding_mask: `(B, T)` (or `(B, T_max)` over the cache when
            decoding with a cache). Defaults to the Keras mask of
            `decoder_sequence` when not decoding with a cache.
        decoder_attention_mask: `(B, T, T)` (or `(B, T, T_max)`).
        encoder_padding_mask: `(B, S)`. Defaults to the Keras mask of
            `encoder_sequence`.
        encoder_attention_mask: `(B, T, S)`.
        use_causal_mask: mask future positions in self-attention (default).
        self_attention_cache: `(B, 2, T_max, h, d_k)` for incremental
            decoding, with `self_attention_cache_update_index`, the position
            of the first token of `decoder_sequence`.
        cross_attention_cache: `(B, 2, S, h, d_k)`, the encoder's projected
            keys and values; `cross_attention_cache_update_index=0` fills it
            from `encoder_sequence`, `None` uses it as is.
        return_attention_scores: also return a dict of attention weights.
        training: whether dropout is active.

    Returns:
        `outputs` `(B, T, d_model)`; with caches, `(outputs,
        self_attention_cache, cross_attention_cache)` (the latter `None`
        without cross-attention); with `return_attention_scores`, a dict
        `{"self_attention": ..., "cross_attention": ...}` comes last.

    Example:
    >>> layer = keras_transformer.layers.TransformerDecoderLayer(intermediate_dim=256, num_heads=4)
    >>> target, source = keras.random.normal((2, 7, 64)), keras.random.normal((2, 9, 64))
    >>> layer(target, source).shape
    (2, 7, 64)
    """

    def __init__(self, intermediate_dim, num_heads, cross_attention=True, **kwargs):
        super().__init__(intermediate_dim, num_heads, **kwargs)
        self.cross_attention = cross_attention

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        hidden_dim = decoder_sequence_shape[-1]
        self.self_attention = self._attention(hidden_dim, "self_attention", positional=True)
        self.self_attention.build(decoder_sequence_shape)
        self.self_attention_residual = self._residual("self_attention_residual", decoder_sequence_shape)
        self.cross_attention_layer = None
        if self.cross_attention:
            if encoder_sequence_shape is None:
                encoder_sequence_shape = decoder_sequence_shape
            self.cross_attention_layer = self._attention(hidden_dim, "cross_attention", positional=False)
            self.cross_attention_layer.build(decoder_sequence_shape, encoder_sequence_shape)
            self.cross_attention_residual = self._residual("cross_attention_residual", decoder_sequence_shape)
        self._build_feed_forward(decoder_sequence_shape)
        self.built = True

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
        cross_attention_cache_update_index=None,
        return_attention_scores=False,
        training=None,
    ):
        if self.cross_attention and encoder_sequence is None and cross_attention_cache is None:
            raise ValueError(
                "This decoder layer has cross-attention (`cross_attention=True`): pass "
                "`encoder_sequence` or a filled `cross_attention_cache`."
            )
        if not self.cross_attention and encoder_sequence is not None:
            raise ValueError(
                "This decoder layer was built without cross-attention "
                "(`cross_attention=False`), so it takes no `encoder_sequence`."
            )
        use_cache = self_attention_cache is not None
        if use_cache:  # Masks span the cache, so the implicit (B, T) mask does not apply.
            check_mask_rank(decoder_padding_mask, 2, "decoder_padding_mask")
            check_mask_rank(decoder_attention_mask, 3, "decoder_attention_mask")
            padding = None if decoder_padding_mask is None else ops.expand_dims(decoder_padding_mask, 1)
            self_mask = combine_masks(padding, decoder_attention_mask)
        else:
            self_mask = merge_padding_and_attention_mask(
                decoder_sequence, decoder_padding_mask, decoder_attention_mask
            )
        scores = {}
        outputs = self._sub_block(
            self.self_attention_residual,
            self.self_attention,
            decoder_sequence,
            attention_mask=self_mask,
            use_causal_mask=use_causal_mask,
            cache=self_attention_cache,
            cache_update_index=self_attention_cache_update_index,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        outputs, self_attention_cache, scores["self_attention"] = self._unpack(
            outputs, use_cache, return_attention_scores
        )
        if self.cross_attention:
            cross_mask = merge_padding_and_attention_mask(
                encoder_sequence, encoder_padding_mask, encoder_attention_mask
            )
            outputs = self._sub_block(
                self.cross_attention_residual,
                self.cross_attention_layer,
                outputs,
                encoder_sequence,
                attention_mask=cross_mask,
                cache=cross_attention_cache,
                cache_update_index=cross_attention_cache_update_index,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            outputs, cross_attention_cache, scores["cross_attention"] = self._unpack(
                outputs, cross_attention_cache is not None, return_attention_scores
            )
        outputs = self._sub_block(self.feed_forward_residual, self.feed_forward, outputs, training=training)

        results = (outputs,)
        if use_cache:
            results += (self_attention_cache, cross_attention_cache)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    @staticmethod
    def _unpack(outputs, has_cache, has_scores):
        """Split `(outputs[, cache][, scores])` into three values."""
        if not isinstance(outputs, (tuple, list)):
            return outputs, None, None
        outputs, *rest = outputs
        cache = rest.pop(0) if has_cache else None
        scores = rest.pop(0) if has_scores else None
        return outputs, cache, scores

    def get_config(self):
        config = super().get_config()
        config.update({"cross_attention": self.cross_attention})
        return config
