import numpy as np
import pytest

from keras_transformer.layers import TransformerDecoderLayer
from tests.test_case import assert_close, check_dropout_only_in_training, check_layer, to_numpy

B, T, S, D = 2, 5, 7, 16
rng = np.random.default_rng(0)
TARGET = rng.normal(size=(B, T, D)).astype("float32")
SOURCE = rng.normal(size=(B, S, D)).astype("float32")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"normalize_first": True}, {"max_relative_position": 3}, {"use_rotary_embedding": True}],
    ids=["post_norm", "pre_norm", "relative", "rotary"],
)
def test_battery_with_cross_attention(kwargs, tmp_path):
    check_layer(
        TransformerDecoderLayer,
        {"intermediate_dim": 32, "num_heads": 4, **kwargs},
        (TARGET, SOURCE),
        (B, T, D),
        tmp_path=tmp_path,
    )


def test_battery_decoder_only(tmp_path):
    check_layer(
        TransformerDecoderLayer,
        {"intermediate_dim": 32, "num_heads": 4, "cross_attention": False},
        TARGET,
        (B, T, D),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("cross_attention", [True, False])
def test_changing_future_positions_leaves_earlier_outputs_unchanged(cross_attention):
    layer = TransformerDecoderLayer(32, 4, cross_attention=cross_attention)
    source = SOURCE if cross_attention else None
    out = to_numpy(layer(TARGET, source))
    changed = TARGET.copy()
    changed[:, 3:] = rng.normal(size=changed[:, 3:].shape)
    out_changed = to_numpy(layer(changed, source))
    assert_close(out_changed[:, :3], out[:, :3], atol=1e-6)
    assert not np.allclose(out_changed[:, 3:], out[:, 3:])


def test_padding_in_source_and_target_leaves_real_positions_unchanged():
    layer = TransformerDecoderLayer(32, 4)
    short = layer(TARGET[:, :3], SOURCE[:, :4])
    target = TARGET.copy()
    target[:, 3:] = 5.0
    source = SOURCE.copy()
    source[:, 4:] = -5.0
    out = layer(
        target,
        source,
        decoder_padding_mask=np.arange(T)[None].repeat(B, 0) < 3,
        encoder_padding_mask=np.arange(S)[None].repeat(B, 0) < 4,
    )
    assert_close(out[:, :3], short, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"normalize_first": True, "max_relative_position": 2}, {"use_rotary_embedding": True}])
def test_cached_decoding_equals_full_pass(kwargs):
    layer = TransformerDecoderLayer(32, 4, **kwargs)
    full = layer(TARGET, SOURCE)
    self_cache = np.zeros((B, 2, T, 4, 4), "float32")
    cross_cache = np.zeros((B, 2, S, 4, 4), "float32")
    steps = []
    for i in range(T):
        out, self_cache, cross_cache = layer(
            TARGET[:, i : i + 1],
            SOURCE if i == 0 else None,
            self_attention_cache=self_cache,
            self_attention_cache_update_index=i,
            cross_attention_cache=cross_cache,
            cross_attention_cache_update_index=0 if i == 0 else None,
        )
        steps.append(to_numpy(out))
    assert_close(np.concatenate(steps, 1), full, atol=1e-5)


def test_return_attention_scores():
    layer = TransformerDecoderLayer(32, 4)
    out, scores = layer(TARGET, SOURCE, return_attention_scores=True)
    assert tuple(scores["self_attention"].shape) == (B, 4, T, T)
    assert tuple(scores["cross_attention"].shape) == (B, 4, T, S)
    upper = np.triu(np.ones((T, T), bool), 1)
    assert np.all(to_numpy(scores["self_attention"])[..., upper] == 0)


def test_dropout_only_in_training():
    check_dropout_only_in_training(TransformerDecoderLayer(32, 4, dropout=0.3), (TARGET, SOURCE))


def test_missing_or_unexpected_encoder_sequence_raises():
    with pytest.raises(ValueError, match="pass `encoder_sequence`"):
        TransformerDecoderLayer(32, 4)(TARGET)
    with pytest.raises(ValueError, match="without cross-attention"):
        TransformerDecoderLayer(32, 4, cross_attention=False)(TARGET, SOURCE)
