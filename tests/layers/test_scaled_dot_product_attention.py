import keras
import numpy as np

from keras_transformer import layers
from tests import reference
from tests.test_case import assert_close


def _qkv(rng, batch=2, t=5, s=7, d=8):
    return (
        rng.normal(size=(batch, t, d)).astype("float32"),
        rng.normal(size=(batch, s, d)).astype("float32"),
        rng.normal(size=(batch, s, d + 3)).astype("float32"),
    )


def test_matches_numpy_formula_without_mask():
    q, k, v = _qkv(np.random.default_rng(0))
    out, weights = layers.scaled_dot_product_attention(q, k, v)
    ref_out, ref_weights = reference.attention(q, k, v)
    assert_close(out, ref_out)
    assert_close(weights, ref_weights)


def test_matches_numpy_formula_with_padding_and_causal_masks():
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, t=6, s=6)
    padding = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    mask = padding[:, None, :] & np.tril(np.ones((6, 6), bool))[None]
    out, weights = layers.scaled_dot_product_attention(q, k, v, mask=mask)
    ref_out, ref_weights = reference.attention(q, k, v, mask)
    assert_close(out, ref_out)
    assert_close(weights, ref_weights)
    weights = np.asarray(weights)
    assert np.all(weights[~np.broadcast_to(mask, weights.shape)] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


def test_fully_masked_row_gives_finite_uniform_weights():
    q, k, v = _qkv(np.random.default_rng(2), t=2, s=3)
    mask = np.zeros((2, 2, 3), bool)
    out, weights = layers.scaled_dot_product_attention(q, k, v, mask=mask)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_allclose(np.asarray(weights), 1.0 / 3.0, rtol=1e-6)


def test_float16_masked_attention_is_finite():
    q, k, v = (x.astype("float16") for x in _qkv(np.random.default_rng(3)))
    mask = np.ones((2, 5, 7), bool)
    mask[:, :, -3:] = False
    out, weights = layers.scaled_dot_product_attention(q, k, v, mask=mask)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert np.isfinite(np.asarray(out, "float32")).all()
    ref_out, _ = reference.attention(*(x.astype("float64") for x in (q, k, v)), mask)
    assert_close(np.asarray(out, "float32"), ref_out, atol=2e-2, rtol=2e-2)
