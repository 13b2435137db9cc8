import keras
import numpy as np
import pytest

from keras_transformer.layers import TransformerEncoderLayer
from tests import reference
from tests.test_case import assert_close, check_dropout_only_in_training, check_layer, to_numpy

B, T, D = 2, 6, 16
X = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"normalize_first": True}, {"max_relative_position": 4}, {"use_rotary_embedding": True}, {"activation": "gelu"}],
    ids=["post_norm", "pre_norm", "relative", "rotary", "gelu"],
)
def test_battery(kwargs, tmp_path):
    check_layer(
        TransformerEncoderLayer, {"intermediate_dim": 32, "num_heads": 4, **kwargs}, X, (B, T, D), tmp_path=tmp_path
    )


def test_post_norm_layer_equals_the_papers_composition():
    layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=4, layer_norm_epsilon=1e-6)
    out = layer(X)
    attention, _ = reference.multi_head_attention(layer.self_attention, X, X)
    gamma1, beta1 = (to_numpy(w) for w in layer.self_attention_residual.layer_norm.get_weights())
    h = reference.layer_norm(X + attention, gamma1, beta1, 1e-6)
    w1, b1, w2, b2 = (to_numpy(w) for w in layer.feed_forward.get_weights())
    gamma2, beta2 = (to_numpy(w) for w in layer.feed_forward_residual.layer_norm.get_weights())
    expected = reference.layer_norm(h + np.maximum(0, h @ w1 + b1) @ w2 + b2, gamma2, beta2, 1e-6)
    assert_close(out, expected, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"normalize_first": True}, {"max_relative_position": 2}, {"use_rotary_embedding": True}])
def test_appended_padding_leaves_real_positions_unchanged(kwargs):
    layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=4, **kwargs)
    short = layer(X[:, :4], padding_mask=np.ones((B, 4), bool))
    padded = X.copy()
    padded[:, 4:] = 7.0
    mask = np.zeros((B, T), bool)
    mask[:, :4] = True
    assert_close(layer(padded, padding_mask=mask)[:, :4], short, atol=1e-5)


def test_implicit_mask_equals_explicit_padding_mask():
    ids = np.array([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 1, 0]])
    inputs = keras.layers.Embedding(10, D, mask_zero=True)(ids)
    layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=4)
    assert_close(layer(inputs), layer(inputs, padding_mask=ids != 0))


def test_attention_mask_combines_with_padding_mask():
    layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=4)
    padding = np.array([[1, 1, 1, 1, 0, 0]] * B, bool)
    causal = np.tril(np.ones((T, T), bool))[None].repeat(B, 0)
    combined = layer(X, padding_mask=padding, attention_mask=causal)
    assert_close(combined, layer(X, attention_mask=causal & padding[:, None, :]))


def test_return_attention_scores():
    layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=4)
    out, scores = layer(X, padding_mask=np.array([[1] * 4 + [0] * 2] * B, bool), return_attention_scores=True)
    assert tuple(scores.shape) == (B, 4, T, T)
    assert np.all(to_numpy(scores)[..., 4:] == 0)
    assert_close(out, layer(X, padding_mask=np.array([[1] * 4 + [0] * 2] * B, bool)), atol=1e-5)


def test_dropout_only_in_training():
    check_dropout_only_in_training(TransformerEncoderLayer(32, 4, dropout=0.3, attention_dropout=0.3), X)


@pytest.mark.parametrize("rate", ["attention_dropout", "activation_dropout"])
def test_each_dropout_rate_acts_alone(rate):
    # Residual dropout off: the rate under test is the only randomness.
    layer = TransformerEncoderLayer(32, 4, dropout=0.0, **{rate: 0.3})
    check_dropout_only_in_training(layer, X)
    expected = (0.3, 0.0) if rate == "attention_dropout" else (0.0, 0.3)
    assert (layer.self_attention.dropout, layer.feed_forward.dropout) == expected
    assert TransformerEncoderLayer.from_config(layer.get_config()).get_config()[rate] == 0.3


def test_model_dim_not_divisible_by_heads_raises():
    with pytest.raises(ValueError, match="divisible by the number of heads"):
        TransformerEncoderLayer(intermediate_dim=32, num_heads=3)(X)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"intermediate_dim": 0, "num_heads": 2},
        {"intermediate_dim": 8, "num_heads": 2, "dropout": -0.1},
        {"intermediate_dim": 8, "num_heads": 2, "activation_dropout": 1.0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        TransformerEncoderLayer(**kwargs)


def test_wrong_padding_mask_rank_raises():
    with pytest.raises(ValueError, match="padding_mask"):
        TransformerEncoderLayer(32, 4)(X, padding_mask=np.ones((B, T, T), bool))
