import functools
import math

import keras
from keras import ops

from keras_transformer.checks import check_bool, check_positive_int
from keras_transformer.layers.utils import dense_2d


@keras.saving.register_keras_serializable(package="keras_transformer")
class TokenEmbedding(keras.layers.ReversibleEmbedding):
    """Token embedding scaled by `sqrt(d_model)` (section 3.4).

    Called with `reverse=True` it is the pre-softmax linear layer: hidden
    states `(B, T, d_model)` become logits `(B, T, vocabulary_size)`, through
    the transposed embedding matrix when `tie_weights=True` (the paper's weight
    sharing) or through a separate matrix otherwise. Built on
    `keras.layers.ReversibleEmbedding`.

    Args:
        vocabulary_size: number of token ids.
        hidden_dim: `d_model`.
        tie_weights: share the matrix between embedding and output projection.
        scale_embeddings: multiply embeddings by `sqrt(d_model)`.
        embeddings_initializer: defaults to `N(0, d_model^-0.5)`, so scaled
            embeddings start with unit variance.
        mask_zero: emit a Keras mask that hides token id 0 (padding).
        output_bias: add a `(vocabulary_size,)` bias, `bias`, to the logits
            of the reverse projection (Marian / OPUS-MT checkpoints'
            `final_logits_bias`). It starts at zero and is not trained, as
            there: a fixed part of a model brought in from elsewhere.

    Call arguments:
        inputs: `(B, T)` int token ids, or `(B, T, d_model)` with `reverse`.
        reverse: project hidden states to vocabulary logits.

    Returns:
        `(B, T, d_model)` embeddings, or `(B, T, vocabulary_size)` logits.

    Example:
    >>> embedding = keras_transformer.layers.TokenEmbedding(1000, 64)
    >>> x = embedding(keras.ops.ones((2, 7), "int32"))
    >>> embedding(x, reverse=True).shape
    (2, 7, 1000)
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        tie_weights=True,
        scale_embeddings=True,
        embeddings_initializer=None,
        mask_zero=False,
        output_bias=False,
        **kwargs,
    ):
        check_positive_int(vocabulary_size, "vocabulary_size")
        check_bool(output_bias, "output_bias")
        check_positive_int(hidden_dim, "hidden_dim")
        if embeddings_initializer is None:
            embeddings_initializer = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        super().__init__(
            input_dim=vocabulary_size,
            output_dim=hidden_dim,
            tie_weights=tie_weights,
            embeddings_initializer=embeddings_initializer,
            mask_zero=mask_zero,
            **kwargs,
        )
        self.scale_embeddings = scale_embeddings
        self.output_bias = output_bias

    def build(self, input_shape=None):
        if self.built:  # a shared embedding is built by each stack that uses it
            return
        if self.output_bias:  # before Embedding.build, which marks the layer built
            self.bias = self.add_weight(shape=(self.input_dim,), initializer="zeros", name="bias", trainable=False)
        super().build(input_shape)

    @property
    def variable_serialization_spec(self):
        # Keras saves an embedding's variables by this list, per quantization mode: the bias goes last.
        spec = super().variable_serialization_spec
        if self.output_bias:
            spec = {mode: [*names, "bias"] for mode, names in spec.items()}
        return spec

    @property
    def vocabulary_size(self):
        return self.input_dim

    @property
    def hidden_dim(self):
        return self.output_dim

    def call(self, inputs, reverse=False):
        if reverse:
            logits = dense_2d(functools.partial(super().call, reverse=True), inputs)  # (B, T, V)
            if self.output_bias:
                logits = logits + ops.cast(self.bias, logits.dtype)
            return logits
        outputs = super().call(inputs)
        if self.scale_embeddings:
            outputs = outputs * ops.cast(math.sqrt(self.output_dim), outputs.dtype)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["vocabulary_size"] = config.pop("input_dim")
        config["hidden_dim"] = config.pop("output_dim")
        config["scale_embeddings"] = self.scale_embeddings
        config["output_bias"] = self.output_bias
        return config
