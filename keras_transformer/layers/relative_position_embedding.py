import keras
from keras import ops

from keras_transformer.checks import check_positive_int
from keras_transformer.layers.utils import clone_initializer


@keras.saving.register_keras_serializable(package="keras_transformer")
class RelativePositionEmbedding(keras.layers.Layer):
    """Clipped relative position embeddings (Shaw et al. 2018).

    The pair (query `i`, key `j`) gets the vector `w[clip(j - i, -k, k)]`
    from a learned table of `2k + 1` rows, `k = max_distance`.
    `MultiHeadAttention(max_relative_position=k)` owns two of these (one for
    keys, one for values) and adds them inside attention.

    Args:
        max_distance: `k`, the clipping distance.
        output_dim: size of each vector (the attention head size).
        initializer: initializer of the `(2k + 1, output_dim)` table.

    Call arguments:
        query_positions: `(T,)` int positions of the queries.
        key_positions: `(S,)` int positions of the keys.

    Returns:
        `(T, S, output_dim)` embeddings.

    Example:
    >>> layer = keras_transformer.layers.RelativePositionEmbedding(4, 16)
    >>> layer(keras.ops.arange(5), keras.ops.arange(7)).shape
    (5, 7, 16)
    """

    def __init__(self, max_distance, output_dim, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive_int(max_distance, "max_distance")
        check_positive_int(output_dim, "output_dim")
        self.max_distance = max_distance
        self.output_dim = output_dim
        self.initializer = keras.initializers.get(initializer)

    def build(self, query_positions_shape=None, key_positions_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(2 * self.max_distance + 1, self.output_dim),
            initializer=clone_initializer(self.initializer),
        )
        self.built = True

    def call(self, query_positions, key_positions):
        distance = ops.expand_dims(key_positions, 0) - ops.expand_dims(query_positions, 1)
        index = ops.clip(distance, -self.max_distance, self.max_distance) + self.max_distance
        return ops.cast(ops.take(self.embeddings, index, axis=0), self.compute_dtype)

    def compute_output_shape(self, query_positions_shape, key_positions_shape):
        return (query_positions_shape[0], key_positions_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_distance": self.max_distance,
                "output_dim": self.output_dim,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
