import keras
import numpy as np
import pytest

from keras_transformer.layers import MultiHeadAttention
from tests import reference
from tests.test_case import assert_close, check_dropout_only_in_training, check_layer, to_numpy

B, T, S, D = 2, 5, 7, 16


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, T, D)).astype("float32"), rng.normal(size=(B, S, D)).astype("float32")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"max_relative_position": 3}, {"use_rotary_embedding": True}, {"value_dim": 6, "output_dim": 10}],
    ids=["plain", "relative", "rotary", "value_dim"],
)
def test_layer_battery(kwargs, tmp_path):
    query, value = _data()
    out_dim = kwargs.get("output_dim", D)
    check_layer(
        MultiHeadAttention,
        {"num_heads": 4, "key_dim": 4, **kwargs},
        (query, value),
        (B, T, out_dim),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("relative", [None, 3])
def test_matches_numpy_reference_with_padding_mask(relative):
    query, value = _data(1)
    layer = MultiHeadAttention(num_heads=4, key_dim=4, max_relative_position=relative)
    padding = np.ones((B, S), bool)
    padding[0, 4:] = False
    mask = np.broadcast_to(padding[:, None, :], (B, T, S))
    out, weights = layer(query, value, attention_mask=mask, return_attention_scores=True)
    ref_out, ref_weights = reference.multi_head_attention(layer, query, value, mask)
    assert_close(out, ref_out, atol=1e-5)
    assert_close(weights, ref_weights, atol=1e-6)


@pytest.mark.parametrize("relative", [None, 2])
def test_causal_self_attention_matches_reference(relative):
    query, _ = _data(2)
    layer = MultiHeadAttention(num_heads=2, key_dim=8, max_relative_position=relative)
    out = layer(query, query, use_causal_mask=True)
    ref_out, _ = reference.multi_head_attention(layer, query, query, causal=True)
    assert_close(out, ref_out, atol=1e-5)


def test_fused_path_equals_explicit_path():
    query, value = _data(3)
    layer = MultiHeadAttention(num_heads=4, key_dim=4)
    mask = np.random.default_rng(0).random((B, T, S)) > 0.3
    mask[..., 0] = True
    fused = layer(query, value, attention_mask=mask, use_causal_mask=False)
    explicit, _ = layer(query, value, attention_mask=mask, return_attention_scores=True)
    assert_close(fused, explicit, atol=1e-5)


def test_value_defaults_to_query_and_key_to_value():
    query, _ = _data(4)
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    assert_close(layer(query), layer(query, query, query))


def test_implicit_keras_mask_equals_explicit_padding_mask():
    ids = np.array([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 1, 2, 0]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    value = embedding(ids)
    assert value._keras_mask is not None
    query = _data(5)[0]
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    implicit = layer(query, value)
    explicit = layer(query, value, attention_mask=np.broadcast_to((ids != 0)[:, None, :], (B, T, S)))
    assert_close(implicit, explicit)
    # An explicit mask wins over the implicit one.
    everything = layer(query, value, attention_mask=np.ones((B, T, S), bool))
    assert not np.allclose(to_numpy(everything), to_numpy(implicit))


def test_padding_keys_do_not_change_real_outputs():
    query, value = _data(6)
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    short = layer(query, value[:, :4], attention_mask=np.ones((B, T, 4), bool))
    padded_value = value.copy()
    padded_value[:, 4:] = 99.0
    mask = np.zeros((B, T, S), bool)
    mask[..., :4] = True
    assert_close(layer(query, padded_value, attention_mask=mask), short, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"max_relative_position": 2}, {"use_rotary_embedding": True}])
def test_cached_step_by_step_equals_full_pass(kwargs):
    x = np.random.default_rng(7).normal(size=(B, 6, D)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, key_dim=8, **kwargs)
    full = layer(x, x, use_causal_mask=True)
    cache = np.zeros((B, 2, 6, 2, 8), "float32")
    steps = []
    for i in range(6):
        out, cache = layer(x[:, i : i + 1], x[:, i : i + 1], use_causal_mask=True, cache=cache, cache_update_index=i)
        steps.append(to_numpy(out))
    assert_close(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert tuple(cache.shape) == (B, 2, 6, 2, 8)


def test_cache_without_update_index_is_used_as_is():
    query, value = _data(8)
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    with pytest.raises(ValueError, match="call or build"):
        layer.compute_cache(value)
    expected = layer(query, value)
    cache = layer.compute_cache(value)
    out, same_cache = layer(query, cache=cache)
    assert_close(out, expected)
    assert_close(same_cache, cache, atol=0, rtol=0)


def test_return_attention_scores_shape_and_rows_sum_to_one():
    query, value = _data(9)
    layer = MultiHeadAttention(num_heads=4, key_dim=4)
    _, scores = layer(query, value, return_attention_scores=True)
    assert tuple(scores.shape) == (B, 4, T, S)
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, rtol=1e-5)


def test_attention_dropout_only_in_training():
    query, value = _data(10)
    layer = MultiHeadAttention(num_heads=2, key_dim=8, dropout=0.5)
    check_dropout_only_in_training(layer, (query, value))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0, "key_dim": 4}, "num_heads"),
        ({"num_heads": 2, "key_dim": -1}, "key_dim"),
        ({"num_heads": 2, "key_dim": 4, "dropout": 1.5}, "dropout"),
        ({"num_heads": 2, "key_dim": 4, "max_relative_position": 2, "use_rotary_embedding": True}, "Choose one"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_wrong_mask_rank_raises():
    query, value = _data(11)
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    with pytest.raises(ValueError, match="attention_mask"):
        layer(query, value, attention_mask=np.ones((B, S), bool))


def test_fused_attention_gets_masks_as_long_as_queries_and_keys(monkeypatch):
    """cuDNN's fused attention takes only `(B, 1, T, S)` masks: every call gets that layout."""
    import keras_transformer as kt

    seen = []
    fused = keras.ops.dot_product_attention

    def spy(query, key, value, mask=None, **kwargs):
        seen.append((tuple(query.shape), tuple(key.shape), None if mask is None else tuple(mask.shape)))
        return fused(query, key, value, mask=mask, **kwargs)

    monkeypatch.setattr(keras.ops, "dot_product_attention", spy)
    model = kt.Transformer(
        source_vocabulary_size=30, target_vocabulary_size=30, num_layers=1, hidden_dim=16,
        num_heads=2, intermediate_dim=32, max_sequence_length=16,
    )
    source = np.array([[5, 6, 7, 8, 9, 2, 0], [5, 6, 2, 0, 0, 0, 0]], "int32")  # S = 7, padded
    target = np.array([[1, 5, 6, 7, 0], [1, 5, 0, 0, 0]], "int32")  # T = 5, padded
    model({"encoder_token_ids": source, "decoder_token_ids": target}, training=True)
    # Encoder self-attention (padding), decoder self-attention (causal and padding), cross-attention.
    assert [mask for _, _, mask in seen] == [(2, 1, 7, 7), (2, 1, 5, 5), (2, 1, 5, 7)]

    seen.clear()
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    query, value = _data()
    layer(query, value, use_causal_mask=True)  # a causal mask alone has no batch dimension
    layer(query, value, attention_mask=np.ones((B, 1, S), bool))
    assert [mask for _, _, mask in seen] == [(B, 1, T, S), (B, 1, T, S)]
