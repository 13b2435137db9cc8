import math

import numpy as np
import pytest

from keras_transformer.layers import TokenEmbedding, TransformerEmbedding
from tests import reference
from tests.test_case import assert_close, check_dropout_only_in_training, check_layer, to_numpy

IDS = np.array([[5, 6, 7, 0], [1, 2, 3, 4]], "int32")


def test_token_embedding_battery(tmp_path):
    check_layer(TokenEmbedding, {"vocabulary_size": 10, "hidden_dim": 8}, IDS, (2, 4, 8), tmp_path=tmp_path)


def test_token_embedding_is_scaled_by_sqrt_d_model():
    layer = TokenEmbedding(10, 16)
    table = None
    out = to_numpy(layer(IDS))
    table = to_numpy(layer.embeddings)
    assert_close(out, table[IDS] * math.sqrt(16))
    unscaled = TokenEmbedding(10, 16, scale_embeddings=False)
    unscaled(IDS)
    unscaled.set_weights(layer.get_weights())
    assert_close(unscaled(IDS), table[IDS])


@pytest.mark.parametrize("tie", [True, False])
def test_reverse_projection_tied_or_separate(tie):
    layer = TokenEmbedding(10, 8, tie_weights=tie)
    hidden = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    layer(IDS)
    logits = to_numpy(layer(hidden, reverse=True))
    assert logits.shape == (2, 3, 10)
    if tie:
        assert_close(logits, hidden @ to_numpy(layer.embeddings).T, atol=1e-5)
        assert len(layer.weights) == 1
    else:
        assert_close(logits, hidden @ to_numpy(layer.reverse_embeddings), atol=1e-5)
        assert len(layer.weights) == 2


@pytest.mark.parametrize("tie", [True, False])
def test_an_output_bias_is_added_to_the_logits_kept_fixed_and_saved(tie, tmp_path):
    if tie:  # (untied, a forward call alone leaves the output matrix without a gradient)
        check_layer(TokenEmbedding, {"vocabulary_size": 10, "hidden_dim": 8, "output_bias": True}, IDS, (2, 4, 8),
                    tmp_path=tmp_path)  # fmt: skip
    layer = TokenEmbedding(10, 8, tie_weights=tie, output_bias=True)
    layer(IDS)
    bias = np.linspace(-1, 1, 10).astype("float32")
    layer.bias.assign(bias)
    hidden = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    kernel = to_numpy(layer.embeddings).T if tie else to_numpy(layer.reverse_embeddings)
    assert_close(layer(hidden, reverse=True), hidden @ kernel + bias, atol=1e-5)
    assert [w.name for w in layer.non_trainable_weights] == ["bias"] and len(layer.trainable_weights) == 1 + (not tie)
    store = {}  # what a `.keras` file holds for the layer: its variables by `variable_serialization_spec`
    layer.save_own_variables(store)
    assert len(store) == 2 + (not tie)
    loaded = TokenEmbedding.from_config(layer.get_config())
    loaded.build()
    loaded.load_own_variables(store)
    assert_close(loaded(hidden, reverse=True), layer(hidden, reverse=True), atol=0)
    assert TokenEmbedding(10, 8).get_config()["output_bias"] is False
    with pytest.raises(ValueError, match="output_bias"):
        TokenEmbedding(10, 8, output_bias="yes")


@pytest.mark.parametrize("position", ["sinusoidal", "learned", "none"])
def test_transformer_embedding_battery(position, tmp_path):
    check_layer(
        TransformerEmbedding,
        {"vocabulary_size": 10, "hidden_dim": 8, "max_sequence_length": 6, "position": position},
        IDS,
        (2, 4, 8),
        tmp_path=tmp_path,
    )


def test_transformer_embedding_adds_sinusoids_to_scaled_tokens():
    layer = TransformerEmbedding(10, 8, 6)
    out = to_numpy(layer(IDS))
    tokens = to_numpy(layer.token_embedding.embeddings)[IDS] * math.sqrt(8)
    assert_close(out, tokens + reference.sinusoid_table(4, 8)[None], atol=1e-5)


def test_bert_style_embedding_is_unscaled_and_normalized(tmp_path):
    # BERT: LayerNorm(tokens + learned positions), no sqrt(d_model); GPT-2: unscaled, no norm.
    check_layer(
        TransformerEmbedding,
        {"vocabulary_size": 10, "hidden_dim": 8, "max_sequence_length": 6, "position": "learned",
         "scale": False, "normalize": True, "layer_norm_epsilon": 1e-12},
        IDS,
        (2, 4, 8),
        tmp_path=tmp_path,
    )  # fmt: skip
    layer = TransformerEmbedding(10, 8, 6, position="learned", scale=False, normalize=True, layer_norm_epsilon=1e-12)
    out = to_numpy(layer(IDS))
    summed = to_numpy(layer.token_embedding.embeddings)[IDS] + to_numpy(layer.position_encoding.position_embeddings)[:4][None]
    expected = (summed - summed.mean(-1, keepdims=True)) / np.sqrt(summed.var(-1, keepdims=True) + 1e-12)
    assert_close(out, expected, atol=1e-5)
    unscaled = TransformerEmbedding(10, 8, 6, position="none", scale=False)
    assert_close(to_numpy(unscaled(IDS)), to_numpy(unscaled.token_embedding.embeddings)[IDS], atol=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        TransformerEmbedding(10, 8, 6, normalize=1)


def test_transformer_embedding_dropout_only_in_training():
    check_dropout_only_in_training(TransformerEmbedding(10, 8, 6, dropout=0.5), IDS)


def test_transformer_embedding_rejects_unknown_position():
    with pytest.raises(ValueError, match="position"):
        TransformerEmbedding(10, 8, 6, position="relative")
