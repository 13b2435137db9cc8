import keras

from keras_transformer.checks import check_rate


@keras.saving.register_keras_serializable(package="keras_transformer")
class Residual(keras.layers.Layer):
    """Add & Norm around a sublayer (sections 3.1 and 5.4), written once for all.

    Post-norm, as in the paper: `LayerNorm(x + Dropout(sublayer(x)))`.
    Pre-norm (`normalize_first=True`): `x + Dropout(sublayer(LayerNorm(x)))`,
    which trains deep stacks without warm-up tricks. A block is three lines
    whatever the sublayer and its arguments:

    ```python
    x = residual.normalize_input(inputs)      # LayerNorm first if pre-norm
    y = sublayer(x, ...)                      # attention or feed-forward
    outputs = residual(inputs, y)             # add (+ LayerNorm if post-norm)
    ```

    Args:
        dropout: residual dropout rate, `P_drop` in the paper.
        normalize_first: pre-norm instead of the paper's post-norm.
        layer_norm_epsilon: LayerNorm epsilon.

    Call arguments:
        inputs: `(B, T, d_model)`, the residual stream entering the block.
        outputs: `(B, T, d_model)`, the sublayer's output.
        training: whether dropout is active.

    Returns:
        `(B, T, d_model)`, the residual stream leaving the block.

    Example:
    >>> ffn = keras_transformer.layers.FeedForward(256)
    >>> residual = keras_transformer.layers.Residual(dropout=0.1)
    >>> x = keras.random.normal((2, 10, 64))
    >>> residual(x, ffn(residual.normalize_input(x))).shape
    (2, 10, 64)
    """

    def __init__(self, dropout=0.0, normalize_first=False, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        check_rate(dropout, "dropout")
        self.dropout = dropout
        self.normalize_first = normalize_first
        self.layer_norm_epsilon = layer_norm_epsilon
        self.supports_masking = True

    def build(self, inputs_shape, outputs_shape=None):
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def normalize_input(self, inputs):
        """The sublayer's input: `LayerNorm(inputs)` if pre-norm, else `inputs`."""
        if not self.built:
            self.build(inputs.shape)
        return self.layer_norm(inputs) if self.normalize_first else inputs

    def call(self, inputs, outputs, training=None):
        outputs = inputs + self.dropout_layer(outputs, training=training)
        return outputs if self.normalize_first else self.layer_norm(outputs)

    def compute_output_shape(self, inputs_shape, outputs_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dropout": self.dropout,
                "normalize_first": self.normalize_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
