import keras

from keras_transformer.layers.feed_forward import FeedForward, get_activation
from keras_transformer.layers.multi_head_attention import MultiHeadAttention
from keras_transformer.layers.residual import Residual
from keras_transformer.checks import check_positive_int, check_rate
from keras_transformer.layers.utils import clone_initializer


class TransformerLayerBase(keras.layers.Layer):
    """Hyperparameters and sublayer factories shared by encoder and decoder layers."""

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        max_relative_position=None,
        use_rotary_embedding=False,
        rotary_max_wavelength=10000,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int(intermediate_dim, "intermediate_dim")
        check_positive_int(num_heads, "num_heads")
        check_rate(dropout, "dropout")
        check_rate(attention_dropout, "attention_dropout")
        check_rate(activation_dropout, "activation_dropout")
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation = get_activation(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.max_relative_position = max_relative_position
        self.use_rotary_embedding = use_rotary_embedding
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def _head_size(self, hidden_dim):
        if hidden_dim % self.num_heads:
            raise ValueError(
                "The model dimension must be divisible by the number of heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        return hidden_dim // self.num_heads

    def _attention(self, hidden_dim, name, positional):
        """A `MultiHeadAttention`; `positional` adds relative/rotary terms."""
        return MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self._head_size(hidden_dim),
            dropout=self.attention_dropout,
            output_dim=hidden_dim,
            max_relative_position=self.max_relative_position if positional else None,
            use_rotary_embedding=self.use_rotary_embedding and positional,
            rotary_max_wavelength=self.rotary_max_wavelength,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _feed_forward(self):
        return FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            dropout=self.activation_dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def _residual(self, name, inputs_shape):
        residual = Residual(
            dropout=self.dropout,
            normalize_first=self.normalize_first,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name=name,
        )
        residual.build(inputs_shape)
        return residual

    @staticmethod
    def _sub_block(residual, sublayer, inputs, *args, training=None, **kwargs):
        """`residual` (Add & Norm) around `sublayer(inputs, *args, **kwargs)`.

        A tuple output (attention with a cache or weights) keeps its extra
        elements after the block's output.
        """
        outputs = sublayer(residual.normalize_input(inputs), *args, training=training, **kwargs)
        extras = ()
        if isinstance(outputs, (tuple, list)):
            outputs, *extras = outputs
        outputs = residual(inputs, outputs, training=training)
        return (outputs, *extras) if extras else outputs

    def _build_feed_forward(self, inputs_shape):
        self.feed_forward = self._feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_residual = self._residual("feed_forward_residual", inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "max_relative_position": self.max_relative_position,
                "use_rotary_embedding": self.use_rotary_embedding,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
