import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_transformer")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding, RoPE (Su et al. 2021).

    Rotates each pair of query/key features by an angle proportional to the
    position, so that `q_i . k_j` depends on `j - i` only. Pairs are formed
    by splitting the head in halves (feature `f` with `f + H/2`), a fixed
    permutation of the paper's interleaved pairs that the learned
    projections absorb. `MultiHeadAttention(use_rotary_embedding=True)`
    applies it to queries and keys.

    Args:
        max_wavelength: base of the angle frequencies, 10000 by default.

    Call arguments:
        inputs: `(B, T, N, H)` per-head queries or keys; `H` must be even.
        start_index: position of the first element. May be a tensor.

    Returns:
        Rotated inputs of the same shape.

    Example:
    >>> q = keras.random.normal((2, 10, 4, 16))
    >>> keras_transformer.layers.RotaryEmbedding()(q).shape
    (2, 10, 4, 16)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        if max_wavelength <= 1:
            raise ValueError(
                f"`max_wavelength` must be greater than 1. Received: max_wavelength={max_wavelength}"
            )
        self.max_wavelength = max_wavelength
        self.built = True

    def call(self, inputs, start_index=0):
        head_dim = inputs.shape[-1]
        if head_dim % 2:
            raise ValueError(
                f"Rotary embedding needs an even head size. Received: head size={head_dim}"
            )
        length = ops.shape(inputs)[1]
        positions = ops.cast(ops.arange(length) + start_index, "float32")  # (T,)
        exponents = ops.arange(0, head_dim, 2, dtype="float32") / head_dim
        inverse_frequency = 1.0 / ops.power(float(self.max_wavelength), exponents)  # (H/2,)
        angles = ops.expand_dims(positions, 1) * ops.expand_dims(inverse_frequency, 0)
        angles = ops.concatenate([angles, angles], axis=-1)[None, :, None, :]  # (1, T, 1, H)
        cos = ops.cast(ops.cos(angles), inputs.dtype)
        sin = ops.cast(ops.sin(angles), inputs.dtype)
        first, second = ops.split(inputs, 2, axis=-1)
        rotated_half = ops.concatenate([-second, first], axis=-1)
        return inputs * cos + rotated_half * sin

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
