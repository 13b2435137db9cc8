import keras

from keras_transformer.layers.transformer_encoder_layer import TransformerEncoderLayer
from keras_transformer.models.stack_base import StackBase


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerEncoder(StackBase):
    """The encoder stack: `N` `TransformerEncoderLayer`s (section 3.1).

    With `normalize_first=True` (pre-norm) a final LayerNorm follows the
    last layer, as pre-norm stacks need.

    Args:
        num_layers: `N`.
        intermediate_dim: `d_ff`.
        num_heads: `h`.
        **kwargs: any other `TransformerEncoderLayer` argument (`dropout`,
            `normalize_first`, `max_relative_position`, ...), plus `name`
            and `dtype`.

    Call arguments:
        inputs: `(B, T, d_model)` embedded tokens.
        padding_mask: `(B, T)`; defaults to the Keras mask of `inputs`.
        attention_mask: `(B, T, T)`.
        return_attention_scores: also return the list of each layer's
            `(B, h, T, T)` weights.
        training: whether dropout is active.

    Returns:
        `(B, T, d_model)`, or `(outputs, [weights per layer])`.

    Example:
    >>> encoder = keras_transformer.models.TransformerEncoder(2, 256, 4)
    >>> encoder(keras.random.normal((2, 10, 64))).shape
    (2, 10, 64)
    """

    layer_class = TransformerEncoderLayer

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        outputs, all_scores = inputs, []
        for layer in self.transformer_layers:
            outputs = layer(
                outputs,
                padding_mask=padding_mask,
                attention_mask=attention_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                outputs, scores = outputs
                all_scores.append(scores)
        outputs = self._finalize(outputs)
        return (outputs, all_scores) if return_attention_scores else outputs
