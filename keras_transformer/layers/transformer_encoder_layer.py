import keras

from keras_transformer.layers.masks import merge_padding_and_attention_mask
from keras_transformer.layers.transformer_layer_base import TransformerLayerBase


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerEncoderLayer(TransformerLayerBase):
    """One encoder layer (section 3.1): self-attention, then feed-forward.

    Each sub-block is wrapped by `Residual` (Add & Norm): post-norm as in the
    paper, pre-norm with `normalize_first=True`. No sequence-to-sequence
    assumption: the layer also serves encoder-only classifiers and taggers.

    Args:
        intermediate_dim: `d_ff`.
        num_heads: `h`; the input size `d_model` must be divisible by it.
        dropout: residual dropout `P_drop`.
        attention_dropout: dropout on attention weights.
        activation_dropout: dropout on the feed-forward's inner activations.
        activation: feed-forward activation (`"relu"`, `"gelu"`, ...).
        layer_norm_epsilon: LayerNorm epsilon.
        normalize_first: pre-norm instead of post-norm.
        max_relative_position: Shaw et al. relative positions in
            self-attention, clipped at this distance.
        use_rotary_embedding: RoPE in self-attention.
        rotary_max_wavelength: RoPE frequency base.
        kernel_initializer, bias_initializer: initializers of all projections.

    Call arguments:
        inputs: `(B, T, d_model)`.
        padding_mask: `(B, T)`, `True` on real tokens. Defaults to the
            Keras mask of `inputs`, if any.
        attention_mask: `(B, T, T)`, combined with the padding mask.
        return_attention_scores: also return `(B, h, T, T)` weights.
        training: whether dropout is active.

    Returns:
        `(B, T, d_model)`, or `(outputs, weights)`.

    Example:
    >>> layer = keras_transformer.layers.TransformerEncoderLayer(intermediate_dim=256, num_heads=4)
    >>> layer(keras.random.normal((2, 10, 64))).shape
    (2, 10, 64)
    """

    def build(self, inputs_shape):
        self.self_attention = self._attention(inputs_shape[-1], "self_attention", positional=True)
        self.self_attention.build(inputs_shape)
        self.self_attention_residual = self._residual("self_attention_residual", inputs_shape)
        self._build_feed_forward(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        mask = merge_padding_and_attention_mask(inputs, padding_mask, attention_mask)
        outputs = self._sub_block(
            self.self_attention_residual,
            self.self_attention,
            inputs,
            attention_mask=mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        if return_attention_scores:
            outputs, scores = outputs
        outputs = self._sub_block(self.feed_forward_residual, self.feed_forward, outputs, training=training)
        return (outputs, scores) if return_attention_scores else outputs
