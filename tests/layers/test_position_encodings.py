import numpy as np
import pytest
from keras import ops

from keras_transformer.layers import (
    PositionEmbedding,
    RelativePositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
)
from tests import reference
from tests.test_case import assert_close, check_layer, to_numpy


def test_sinusoid_table_equals_the_papers_formula():
    x = np.zeros((1, 50, 32), "float32")
    assert_close(SinusoidalPositionEncoding()(x)[0], reference.sinusoid_table(50, 32), atol=2e-5)


@pytest.mark.parametrize("dim", [32, 7])
def test_concatenated_sinusoid_equals_marian_s_table(dim):
    x = np.zeros((2, 6, dim), "float32")
    layer = SinusoidalPositionEncoding(layout="concatenated")
    assert_close(layer(x)[0], reference.concatenated_sinusoid_table(6, dim), atol=2e-5)
    assert_close(layer(x, start_index=40)[1], reference.concatenated_sinusoid_table(46, dim)[40:], atol=2e-5)
    with pytest.raises(ValueError, match="`layout` must be one of"):
        SinusoidalPositionEncoding(layout="split")


def test_sinusoid_odd_dimension_and_start_index():
    x = np.zeros((2, 6, 7), "float32")
    encoding = SinusoidalPositionEncoding()(x, start_index=4)
    assert_close(encoding[1], reference.sinusoid_table(10, 7)[4:], atol=2e-5)


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_sinusoid_angles_stay_float32_under_mixed_precision(dtype):
    # Only the encoding is rounded to the compute dtype, not the angles: bfloat16 angles would be
    # off by up to ~0.25 rad at position 60.
    encoding = SinusoidalPositionEncoding(dtype=dtype)(np.zeros((1, 64, 32), "float32"))
    expected = reference.sinusoid_table(64, 32)
    atol = 2 ** -8 if dtype == "mixed_bfloat16" else 2 ** -11  # half a unit in the last place at 1.0
    assert_close(ops.cast(encoding, "float32")[0], expected, atol=atol)


def test_sinusoidal_battery(tmp_path):
    check_layer(
        SinusoidalPositionEncoding, {"max_wavelength": 100}, np.zeros((2, 5, 8), "float32"), (2, 5, 8), tmp_path=tmp_path
    )
    check_layer(
        SinusoidalPositionEncoding, {"layout": "concatenated"}, np.zeros((2, 5, 8), "float32"), (2, 5, 8),
        tmp_path=tmp_path,
    )


def test_learned_position_embedding_battery_and_start_index(tmp_path):
    layer, outputs = check_layer(
        PositionEmbedding, {"sequence_length": 10}, np.zeros((2, 5, 8), "float32"), (2, 5, 8), tmp_path=tmp_path
    )
    table = to_numpy(layer.position_embeddings)
    assert_close(outputs[0], table[:5])
    assert_close(layer(np.zeros((1, 2, 8), "float32"), start_index=3)[0], table[3:5])


def test_learned_position_embedding_rejects_over_long_input():
    layer = PositionEmbedding(sequence_length=4)
    with pytest.raises(ValueError, match="longer than the 4 positions"):
        layer(np.zeros((1, 5, 8), "float32"))


def test_relative_position_embedding_clips_distance():
    layer = RelativePositionEmbedding(max_distance=2, output_dim=3)
    out = to_numpy(layer(ops.arange(4), ops.arange(6)))
    table = to_numpy(layer.embeddings)
    assert out.shape == (4, 6, 3)
    for i in range(4):
        for j in range(6):
            np.testing.assert_array_equal(out[i, j], table[np.clip(j - i, -2, 2) + 2])


def test_rotary_preserves_norms_and_makes_scores_relative():
    rng = np.random.default_rng(0)
    layer = RotaryEmbedding()
    q = np.repeat(rng.normal(size=(1, 1, 1, 8)), 12, axis=1).astype("float32")
    k = np.repeat(rng.normal(size=(1, 1, 1, 8)), 12, axis=1).astype("float32")
    rq, rk = to_numpy(layer(q)), to_numpy(layer(k))
    np.testing.assert_allclose(np.linalg.norm(rq, axis=-1), np.linalg.norm(q, axis=-1), rtol=1e-5)
    # The same vectors at positions (i, j) score the same for equal j - i.
    scores = np.einsum("bind,bjnd->ij", rq, rk)
    for offset in range(-3, 4):
        diagonal = np.diagonal(scores, offset)
        np.testing.assert_allclose(diagonal, diagonal[0], rtol=1e-4, atol=1e-4)
    # The start index shifts positions.
    assert_close(layer(q[:, 5:6], start_index=5), rq[:, 5:6], atol=1e-5)


def test_rotary_needs_even_head_size():
    with pytest.raises(ValueError, match="even head size"):
        RotaryEmbedding()(np.zeros((1, 2, 1, 5), "float32"))


@pytest.mark.parametrize("cls, kwargs", [(SinusoidalPositionEncoding, {}), (RotaryEmbedding, {})])
def test_bad_wavelength_raises(cls, kwargs):
    with pytest.raises(ValueError, match="max_wavelength"):
        cls(max_wavelength=1)


@pytest.mark.parametrize(
    "cls, kwargs",
    [(PositionEmbedding, {"sequence_length": 0}), (RelativePositionEmbedding, {"max_distance": 0, "output_dim": 4})],
)
def test_bad_sizes_raise(cls, kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        cls(**kwargs)
