import numpy as np
import pytest
from keras import ops

from keras_transformer import layers
from keras_transformer.layers.masks import check_mask_rank
from tests.test_case import to_numpy


def test_padding_mask_marks_nonzero_ids():
    ids = np.array([[5, 6, 0, 0], [7, 0, 0, 0]])
    np.testing.assert_array_equal(to_numpy(layers.padding_mask(ids)), ids != 0)


def test_causal_mask_is_lower_triangular():
    np.testing.assert_array_equal(to_numpy(layers.causal_mask(4)), np.tril(np.ones((4, 4), bool)))


def test_causal_mask_with_offset_for_cached_decoding():
    # Query at absolute position 2 over a cache of 5 slots sees slots 0..2.
    np.testing.assert_array_equal(to_numpy(layers.causal_mask(1, 5, start_index=2)), [[1, 1, 1, 0, 0]])


def test_combine_masks_is_logical_and_with_broadcast_and_none():
    padding = np.array([[[1, 1, 0]]], bool)  # (1, 1, 3)
    causal = np.tril(np.ones((3, 3), bool))[None]
    combined = to_numpy(layers.combine_masks(None, padding, causal))
    np.testing.assert_array_equal(combined, padding & causal)
    assert layers.combine_masks(None, None) is None


def test_merge_padding_and_attention_mask_shapes():
    x = np.zeros((2, 3, 4), "float32")
    padding = np.array([[1, 1, 0], [1, 0, 0]], bool)
    merged = to_numpy(layers.merge_padding_and_attention_mask(x, padding))
    assert merged.shape == (2, 1, 3)
    attention = np.ones((2, 3, 3), bool)
    attention[:, :, 0] = False
    merged = to_numpy(layers.merge_padding_and_attention_mask(x, padding, attention))
    np.testing.assert_array_equal(merged, padding[:, None, :] & attention)


@pytest.mark.parametrize("shape, rank, name", [((2, 3, 3), 2, "padding_mask"), ((2, 3), 3, "attention_mask")])
def test_wrong_mask_rank_raises(shape, rank, name):
    with pytest.raises(ValueError, match=f"`{name}` must have rank {rank}"):
        check_mask_rank(ops.ones(shape), rank, name)


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_mask_value_is_finite_and_survives_softmax(dtype):
    value = layers.mask_value(dtype)
    assert np.isfinite(np.asarray(value, dtype=np.float32))
    scores = ops.cast(ops.convert_to_tensor([[value, 0.0, value]]), dtype)
    assert np.isfinite(to_numpy(ops.cast(scores, "float32"))).all()
    weights = to_numpy(ops.cast(ops.softmax(ops.cast(scores, "float32")), "float32"))
    np.testing.assert_allclose(weights, [[0.0, 1.0, 0.0]])
