import numpy as np
import pytest

from keras_transformer.models import TransformerDecoder, TransformerEncoder
from tests.test_case import assert_close, check_layer, to_numpy

B, T, S, D = 2, 5, 6, 16
rng = np.random.default_rng(0)
TARGET = rng.normal(size=(B, T, D)).astype("float32")
SOURCE = rng.normal(size=(B, S, D)).astype("float32")


@pytest.mark.parametrize("normalize_first", [False, True])
def test_encoder_stack_battery(normalize_first, tmp_path):
    layer, _ = check_layer(
        TransformerEncoder,
        {"num_layers": 2, "intermediate_dim": 32, "num_heads": 4, "normalize_first": normalize_first},
        SOURCE,
        (B, S, D),
        tmp_path=tmp_path,
    )
    assert len(layer.transformer_layers) == 2
    assert (layer.final_layer_norm is not None) == normalize_first


@pytest.mark.parametrize("cross_attention", [True, False])
def test_decoder_stack_battery(cross_attention, tmp_path):
    inputs = (TARGET, SOURCE) if cross_attention else TARGET
    check_layer(
        TransformerDecoder,
        {"num_layers": 2, "intermediate_dim": 32, "num_heads": 4, "cross_attention": cross_attention},
        inputs,
        (B, T, D),
        tmp_path=tmp_path,
    )


def test_encoder_stack_returns_each_layers_scores():
    encoder = TransformerEncoder(3, 32, 4)
    out, scores = encoder(SOURCE, return_attention_scores=True)
    assert len(scores) == 3 and tuple(scores[0].shape) == (B, 4, S, S)
    assert_close(out, encoder(SOURCE), atol=1e-5)


def test_encoder_stack_is_the_composition_of_its_layers():
    encoder = TransformerEncoder(2, 32, 4)
    mask = np.array([[1, 1, 1, 1, 0, 0]] * B, bool)
    expected = SOURCE
    for layer in encoder.transformer_layers:
        expected = layer(expected, padding_mask=mask)
    assert_close(encoder(SOURCE, padding_mask=mask), expected, atol=1e-6)


@pytest.mark.parametrize("stacked", [False, True], ids=["tuples", "stacked"])
@pytest.mark.parametrize("cross_attention", [True, False])
def test_decoder_stack_cached_decoding_equals_full_pass(cross_attention, stacked):
    from keras_transformer.models import stack_cache

    decoder = TransformerDecoder(2, 32, 4, cross_attention=cross_attention, normalize_first=True)
    source = SOURCE if cross_attention else None
    full = to_numpy(decoder(TARGET, source))
    self_cache = decoder.initialize_self_attention_cache(B, T)
    cross_cache = decoder.compute_cross_attention_cache(SOURCE) if cross_attention else None
    if stacked:  # one (B, 2N, T, h, d_k) tensor each, returned in the same form
        self_cache = stack_cache(self_cache)
        cross_cache = None if cross_cache is None else stack_cache(cross_cache)
    steps = []
    for i in range(T):
        out, self_cache, cross_cache = decoder(
            TARGET[:, i : i + 1],
            self_attention_cache=self_cache,
            self_attention_cache_update_index=i,
            cross_attention_cache=cross_cache,
        )
        steps.append(to_numpy(out))
        assert isinstance(self_cache, (tuple, list)) != stacked
    assert_close(np.concatenate(steps, 1), full, atol=1e-5)


def test_stack_config_keeps_layer_arguments():
    encoder = TransformerEncoder(2, 32, 4, dropout=0.2, max_relative_position=3, name="enc")
    config = encoder.get_config()
    assert config["dropout"] == 0.2 and config["max_relative_position"] == 3 and config["name"] == "enc"
    clone = TransformerEncoder.from_config(config)
    assert clone.transformer_layers[1].max_relative_position == 3


def test_bad_num_layers_raises():
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(0, 32, 4)


def test_symbolic_calls_return_attention_scores_and_caches():
    """Functional models see every output (scores for visualisation, caches for export)."""
    import keras

    from keras_transformer.layers import TransformerEncoderLayer

    source = keras.Input((S, D))
    out, scores = TransformerEncoderLayer(32, 4)(source, return_attention_scores=True)
    assert tuple(scores.shape) == (None, 4, S, S)
    out, all_scores = TransformerEncoder(2, 32, 4)(source, return_attention_scores=True)
    assert len(all_scores) == 2 and tuple(all_scores[1].shape) == (None, 4, S, S)

    decoder = TransformerDecoder(2, 32, 4)
    token = keras.Input((1, D))
    cache = keras.Input((4, T, 4, 4))
    cross = keras.Input((4, S, 4, 4))
    out, new_cache, new_cross = decoder(
        token, self_attention_cache=cache, self_attention_cache_update_index=0, cross_attention_cache=cross
    )
    assert tuple(out.shape) == (None, 1, D) and tuple(new_cache.shape) == (None, 4, T, 4, 4)
