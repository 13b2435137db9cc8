import keras

from keras_transformer.checks import check_positive_int, check_rate
from keras_transformer.layers.utils import clone_initializer, dense_2d


@keras.saving.register_keras_serializable(package="keras_transformer")
def gelu_approximate(x):
    """GELU's tanh approximation, `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`: GPT-2's `gelu_new`.

    `"gelu"` is the exact GELU (BERT's); `FeedForward(activation="gelu_approximate")`
    takes this one by name.
    """
    return keras.activations.gelu(x, approximate=True)


def get_activation(activation):
    """A Keras activation, or `"gelu_approximate"` (this module's)."""
    return gelu_approximate if activation == "gelu_approximate" else keras.activations.get(activation)


@keras.saving.register_keras_serializable(package="keras_transformer")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network (section 3.3).

    `FFN(x) = max(0, x W_1 + b_1) W_2 + b_2`, applied to each position alike;
    `d_ff = intermediate_dim`. GELU (or any Keras activation, or
    `"gelu_approximate"`: GPT-2's tanh approximation) by `activation`.

    Args:
        intermediate_dim: `d_ff`, the inner size (2048 in the base model).
        activation: inner activation, `"relu"` in the paper.
        dropout: dropout on the inner activations (0 in the paper).
        output_dim: output size; defaults to the input's last dimension.
        kernel_initializer, bias_initializer: initializers of both layers.

    Call arguments:
        inputs: `(B, T, d_model)`.
        training: whether dropout is active.

    Returns:
        `(B, T, output_dim)`.

    Example:
    >>> ffn = keras_transformer.layers.FeedForward(intermediate_dim=2048)
    >>> ffn(keras.random.normal((2, 10, 512))).shape
    (2, 10, 512)
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        output_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int(intermediate_dim, "intermediate_dim")
        check_positive_int(output_dim, "output_dim", allow_none=True)
        check_rate(dropout, "dropout")
        self.intermediate_dim = intermediate_dim
        self.activation = get_activation(activation)
        self.dropout = dropout
        self.output_dim = output_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        def dense(units, activation, name):
            return keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                bias_initializer=clone_initializer(self.bias_initializer),
                dtype=self.dtype_policy,
                name=name,
            )

        self.intermediate_dense = dense(self.intermediate_dim, self.activation, "intermediate_dense")
        self.intermediate_dense.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.output_dense = dense(self.output_dim or inputs_shape[-1], None, "output_dense")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        x = dense_2d(self.intermediate_dense, inputs)  # (B, T, d_ff)
        x = self.dropout_layer(x, training=training)
        return dense_2d(self.output_dense, x)  # (B, T, d_model)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.output_dim or inputs_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "output_dim": self.output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
