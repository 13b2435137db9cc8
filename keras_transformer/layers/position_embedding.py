import keras
from keras import ops

from keras_transformer.checks import check_positive_int
from keras_transformer.layers.utils import clone_initializer


@keras.saving.register_keras_serializable(package="keras_transformer")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings (the paper's section 3.5 variant).

    Args:
        sequence_length: the largest number of positions the layer can embed.
        initializer: initializer of the `(sequence_length, d_model)` table.

    Call arguments:
        inputs: `(B, T, d_model)` embeddings; only their shape is used.
        start_index: position of the first element. May be a tensor.

    Returns:
        `(B, T, d_model)` position embeddings, to be added to `inputs`.

    Example:
    >>> x = keras.random.normal((2, 10, 64))
    >>> x = x + keras_transformer.layers.PositionEmbedding(sequence_length=128)(x)
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive_int(sequence_length, "sequence_length")
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, inputs_shape[-1]),
            initializer=clone_initializer(self.initializer),
        )
        self.built = True

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length = shape[-2]
        if isinstance(length, int) and length > self.sequence_length:
            raise ValueError(
                f"Sequence of length {length} is longer than the "
                f"{self.sequence_length} positions this layer embeds "
                "(`sequence_length`)."
            )
        table = ops.convert_to_tensor(self.position_embeddings)
        embeddings = ops.slice(table, (start_index, 0), (length, shape[-1]))
        return ops.broadcast_to(ops.cast(embeddings, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
