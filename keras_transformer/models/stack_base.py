import keras

from keras_transformer.checks import check_positive_int


class StackBase(keras.layers.Layer):
    """N identical layers and, with pre-norm, the final LayerNorm.

    Subclasses say which layer class they stack and how each is called; the
    constructor takes that layer's arguments (see `TransformerEncoderLayer`).
    """

    layer_class = None

    def __init__(self, num_layers, intermediate_dim, num_heads, **layer_kwargs):
        name = layer_kwargs.pop("name", None)
        dtype = layer_kwargs.pop("dtype", None)
        trainable = layer_kwargs.pop("trainable", True)
        super().__init__(name=name, dtype=dtype, trainable=trainable)
        check_positive_int(num_layers, "num_layers")
        self.num_layers = num_layers
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.layer_kwargs = layer_kwargs
        self.transformer_layers = [
            self.layer_class(
                intermediate_dim,
                num_heads,
                dtype=self.dtype_policy,
                name=f"layer_{i}",
                **layer_kwargs,
            )
            for i in range(num_layers)
        ]
        self.normalize_first = self.transformer_layers[0].normalize_first
        self.final_layer_norm = None
        if self.normalize_first:
            self.final_layer_norm = keras.layers.LayerNormalization(
                epsilon=self.transformer_layers[0].layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="final_layer_norm",
            )
        self.supports_masking = True

    def build(self, inputs_shape, *args):
        for layer in self.transformer_layers:
            if not layer.built:
                layer.build(inputs_shape, *args)
        if self.final_layer_norm is not None:
            self.final_layer_norm.build(inputs_shape)
        self.built = True

    def _finalize(self, outputs):
        return self.final_layer_norm(outputs) if self.final_layer_norm is not None else outputs

    def get_config(self):
        config = super().get_config()
        layer_config = self.transformer_layers[0].get_config()
        for key in ("name", "dtype", "trainable"):
            layer_config.pop(key, None)
        config.update(num_layers=self.num_layers, **layer_config)
        return config
