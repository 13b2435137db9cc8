import numpy as np
import pytest

from keras_transformer.layers import FeedForward, Residual
from tests import reference
from tests.test_case import assert_close, check_dropout_only_in_training, check_layer, to_numpy

X = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_approximate"])
def test_feed_forward_battery(activation, tmp_path):
    check_layer(FeedForward, {"intermediate_dim": 16, "activation": activation}, X, (2, 5, 8), tmp_path=tmp_path)


def test_feed_forward_equals_formula():
    layer = FeedForward(intermediate_dim=16)
    out = layer(X)
    w1, b1, w2, b2 = (to_numpy(w) for w in layer.get_weights())
    assert_close(out, np.maximum(0, X @ w1 + b1) @ w2 + b2, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", "gelu_approximate"])
def test_gelu_is_exact_and_gelu_approximate_is_the_tanh_form(activation):
    from math import erf, pi, sqrt

    layer = FeedForward(intermediate_dim=16, activation=activation)
    out = layer(X)
    w1, b1, w2, b2 = (to_numpy(w) for w in layer.get_weights())
    h = X @ w1 + b1
    if activation == "gelu":  # BERT's
        inner = 0.5 * h * (1 + np.vectorize(erf)(h / sqrt(2)))
    else:  # GPT-2's gelu_new
        inner = 0.5 * h * (1 + np.tanh(sqrt(2 / pi) * (h + 0.044715 * h**3)))
    assert_close(out, inner @ w2 + b2, atol=1e-5)


def test_feed_forward_inner_dropout_only_in_training():
    check_dropout_only_in_training(FeedForward(16, dropout=0.5), X)


def test_feed_forward_bad_arguments():
    with pytest.raises(ValueError, match="intermediate_dim"):
        FeedForward(0)


@pytest.mark.parametrize("normalize_first", [False, True])
def test_residual_battery(normalize_first, tmp_path):
    # With pre-norm the LayerNorm acts in `normalize_input`, outside `call`,
    # so a model of `call` alone has nothing to train.
    check_layer(
        Residual,
        {"normalize_first": normalize_first, "dropout": 0.1},
        (X, X * 2),
        (2, 5, 8),
        run_training_step=not normalize_first,
        tmp_path=tmp_path,
    )


def test_post_norm_and_pre_norm_formulas():
    sublayer = FeedForward(16)
    post = Residual(normalize_first=False, layer_norm_epsilon=1e-6)
    post_out = post(X, sublayer(post.normalize_input(X)))
    gamma, beta = (to_numpy(w) for w in post.layer_norm.get_weights())
    w1, b1, w2, b2 = (to_numpy(w) for w in sublayer.get_weights())
    ffn = lambda x: np.maximum(0, x @ w1 + b1) @ w2 + b2  # noqa: E731
    assert_close(post_out, reference.layer_norm(X + ffn(X), gamma, beta, 1e-6), atol=1e-5)

    pre = Residual(normalize_first=True, layer_norm_epsilon=1e-6)
    pre_out = pre(X, sublayer(pre.normalize_input(X)))
    assert_close(pre_out, X + ffn(reference.layer_norm(X, gamma, beta, 1e-6)), atol=1e-5)


def test_residual_dropout_only_in_training():
    check_dropout_only_in_training(Residual(dropout=0.5), (X, X + 1))
