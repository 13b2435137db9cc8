import keras
from keras import ops


LAYOUTS = ("interleaved", "concatenated")


@keras.saving.register_keras_serializable(package="keras_transformer")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """The paper's fixed position encoding (section 3.5).

    `PE(pos, 2i) = sin(pos / max_wavelength^(2i / d_model))` on even dimensions
    and `PE(pos, 2i + 1) = cos(pos / max_wavelength^(2i / d_model))` on odd
    ones. The layer has no weights, so it works for any sequence length.

    Args:
        max_wavelength: the base of the geometric progression of wavelengths,
            10000 in the paper.
        layout: where the sines and cosines go: `"interleaved"` (the paper:
            sine on even dimensions, cosine on odd ones) or `"concatenated"`
            (the same frequencies, every sine first, then every cosine:
            `[sin(pos / w^(2i/d)) for i < ceil(d/2) | cos(pos / w^(2i/d)) for
            i < floor(d/2)]`, the layout of Marian / OPUS-MT checkpoints).

    Call arguments:
        inputs: `(B, T, d_model)` embeddings; only their shape is used.
        start_index: position of the first element (non-zero when decoding
            step by step). May be a tensor.

    Returns:
        `(B, T, d_model)` encodings, to be added to `inputs`.

    Example:
    >>> x = keras.random.normal((2, 10, 64))
    >>> x = x + keras_transformer.layers.SinusoidalPositionEncoding()(x)
    """

    def __init__(self, max_wavelength=10000, layout="interleaved", **kwargs):
        super().__init__(**kwargs)
        if max_wavelength <= 1:
            raise ValueError(
                f"`max_wavelength` must be greater than 1. Received: max_wavelength={max_wavelength}"
            )
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
        self.max_wavelength = max_wavelength
        self.layout = layout
        self.supports_masking = True
        self.built = True

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length, dim = shape[-2], shape[-1]
        # Angles in float32 whatever the compute dtype: in bfloat16 (8 significant bits) position 60
        # would be off by up to 0.25 rad, in float16 by 0.03; only the encoding is cast.
        positions = ops.cast(ops.arange(length) + start_index, "float32")  # (T,)
        dims = ops.arange(dim)
        if self.layout == "interleaved":
            even_dims = dims - dims % 2  # 2i, repeated
            sine = dims % 2 == 0
        else:  # dimension j < ceil(d/2) is the sine of frequency i = j, the rest the cosine of i = j - ceil(d/2)
            sines = (dim + 1) // 2
            sine = dims < sines
            even_dims = 2 * ops.where(sine, dims, dims - sines)
        timescales = ops.power(
            ops.cast(self.max_wavelength, "float32"), ops.cast(even_dims, "float32") / ops.cast(dim, "float32")
        )
        angles = ops.expand_dims(positions, 1) / ops.expand_dims(timescales, 0)  # (T, D)
        encoding = ops.where(ops.expand_dims(sine, 0), ops.sin(angles), ops.cos(angles))
        return ops.broadcast_to(ops.cast(encoding, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength, "layout": self.layout})
        return config
