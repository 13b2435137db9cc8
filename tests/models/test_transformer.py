import os

import keras
import numpy as np
import pytest

import keras_transformer as kt
from tests.models.conftest import SOURCE_VOCAB, TARGET_VOCAB, make_model
from tests.test_case import assert_close, to_numpy

VARIANTS = [
    {},
    {"position": "learned"},
    {"position": "relative"},
    {"position": "rotary"},
    {"normalize_first": True},
    {"tie_embeddings": True},
    {"share_embeddings": True, "tie_embeddings": True, "target_vocabulary_size": SOURCE_VOCAB},
    # What an imported Marian (OPUS-MT) checkpoint sets (keras_transformer.pretrained).
    {"share_embeddings": True, "tie_embeddings": True, "target_vocabulary_size": SOURCE_VOCAB,
     "position_layout": "concatenated", "output_bias": True, "activation": "silu"},
    # BERT's embedding (no sqrt(d) scale, segments, a LayerNorm on the sum) and exact GELU.
    {"position": "learned", "scale_embeddings": False, "embedding_norm": True, "activation": "gelu",
     "segment_vocabulary_size": 2},
]
IDS = ["sinusoidal", "learned", "relative", "rotary", "pre_norm", "tied", "shared", "marian", "bert_embedding"]


def _target_vocab(kwargs):
    return kwargs.get("target_vocabulary_size", TARGET_VOCAB)


def _clip_target(batch, kwargs):
    batch = dict(batch)
    batch["decoder_token_ids"] = np.minimum(batch["decoder_token_ids"], _target_vocab(kwargs) - 1)
    return batch


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_output_shape_and_dtype(kwargs, batch):
    logits = make_model(**kwargs)(_clip_target(batch, kwargs))
    assert tuple(logits.shape) == (3, 7, _target_vocab(kwargs))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_changing_future_target_tokens_leaves_earlier_logits_unchanged(kwargs, batch):
    batch = _clip_target(batch, kwargs)
    model = make_model(**kwargs)
    logits = to_numpy(model(batch))
    changed = dict(batch)
    changed["decoder_token_ids"] = batch["decoder_token_ids"].copy()
    changed["decoder_token_ids"][:, 4:] = (changed["decoder_token_ids"][:, 4:] + 7) % (_target_vocab(kwargs) - 4) + 4
    changed_logits = to_numpy(model(changed))
    assert_close(changed_logits[:, :4], logits[:, :4], atol=1e-5)
    assert not np.allclose(changed_logits[:, 4:], logits[:, 4:])


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_appended_padding_leaves_real_logits_unchanged(kwargs, batch):
    batch = _clip_target(batch, kwargs)
    model = make_model(**kwargs)
    logits = to_numpy(model(batch))
    padded = {
        "encoder_token_ids": np.pad(batch["encoder_token_ids"], ((0, 0), (0, 4))),
        "decoder_token_ids": np.pad(batch["decoder_token_ids"], ((0, 0), (0, 3))),
    }
    padded_logits = to_numpy(model(padded))[:, :7]
    real = batch["decoder_token_ids"] != 0
    assert_close(padded_logits[real], logits[real], atol=1e-5)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_cached_decoding_equals_full_pass(kwargs, batch):
    batch = _clip_target(batch, kwargs)
    model = make_model(**kwargs)
    logits = to_numpy(model(batch))
    encoder_output, encoder_mask = model.encode(batch["encoder_token_ids"])
    self_cache, cross_cache = model.initialize_cache(encoder_output, max_length=7)
    assert [tuple(c.shape) for c in self_cache] == [(3, 7, 4, 8)] * 4  # keys and values of 2 layers
    assert [tuple(c.shape) for c in cross_cache] == [(3, 9, 4, 8)] * 4
    steps = []
    for i in range(7):
        step, self_cache, cross_cache = model.call_with_cache(
            batch["decoder_token_ids"][:, i : i + 1], self_cache, cross_cache, i, encoder_mask
        )
        steps.append(to_numpy(step))
    real = batch["decoder_token_ids"] != 0
    assert_close(np.concatenate(steps, 1)[real], logits[real], atol=1e-5)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_config_and_keras_file_round_trips(kwargs, batch, tmp_path):
    batch = _clip_target(batch, kwargs)
    model = make_model(**kwargs)
    logits = to_numpy(model(batch))
    clone = kt.Transformer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    assert_close(clone(batch), logits, atol=0, rtol=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, kt.Transformer)
    assert_close(restored(batch), logits, atol=0, rtol=0)


def test_compiled_model_round_trips_with_optimizer_state(batch, tmp_path):
    model = make_model()
    model.compile(warmup_steps=10)
    labels = np.roll(batch["decoder_token_ids"], -1, axis=1)
    model.fit(batch, labels, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, kt.losses.MaskedSparseCategoricalCrossentropy)
    assert restored.loss.label_smoothing == 0.1
    assert int(restored.optimizer.iterations) == 1
    assert_close(restored.evaluate(batch, labels, verbose=0)[0], model.evaluate(batch, labels, verbose=0)[0])


def test_shared_embeddings_use_one_matrix():
    model = make_model(share_embeddings=True, tie_embeddings=True, target_vocabulary_size=SOURCE_VOCAB)
    assert model.encoder_embedding is model.decoder_embedding
    separate = make_model(tie_embeddings=True)
    shared_count = sum(int(np.prod(w.shape)) for w in model.weights)
    separate_count = sum(int(np.prod(w.shape)) for w in separate.weights)
    assert separate_count - shared_count == TARGET_VOCAB * 32


def test_dropout_acts_only_in_training(batch):
    model = make_model(dropout=0.3)
    first, second = to_numpy(model(batch, training=False)), to_numpy(model(batch, training=False))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(to_numpy(model(batch, training=True)), first)
    assert_close(model.predict(batch, verbose=0), first, atol=1e-5)


@pytest.mark.parametrize("name, expected", [("base", (6, 512, 8, 2048, 0.1)), ("big", (6, 1024, 16, 4096, 0.3))])
def test_paper_presets(name, expected):
    config = kt.models.PRESETS[name]
    assert (config["num_layers"], config["hidden_dim"], config["num_heads"], config["intermediate_dim"], config["dropout"]) == expected


def test_from_preset_builds_and_overrides():
    model = kt.Transformer.from_preset("tiny", source_vocabulary_size=30, target_vocabulary_size=31, num_layers=1)
    assert model.num_layers == 1 and model.hidden_dim == kt.models.PRESETS["tiny"]["hidden_dim"]
    assert len(model.encoder.transformer_layers) == 1


def test_base_preset_parameter_count_matches_the_paper():
    # Table 3 of the paper: 65M parameters for the base model with a shared
    # 37000-token vocabulary and three-way weight sharing.
    model = kt.Transformer.from_preset(
        "base",
        source_vocabulary_size=37000,
        target_vocabulary_size=37000,
        share_embeddings=True,
        tie_embeddings=True,
    )
    assert 60e6 < model.count_params() < 66e6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_dim": 30, "num_heads": 4}, "divisible"),
        ({"position": "absolute"}, "position"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"activation_dropout": 1.0}, "activation_dropout"),
        ({"attention_dropout": -0.1}, "attention_dropout"),
        ({"share_embeddings": True}, "joint vocabulary"),
        ({"position_layout": "split"}, "position_layout"),
        ({"output_bias": "yes"}, "output_bias"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="Unknown preset"):
        kt.Transformer.from_preset("huge", source_vocabulary_size=10, target_vocabulary_size=10)


def test_wrong_inputs_raise(batch):
    model = make_model()
    with pytest.raises(ValueError, match="encoder_token_ids"):
        model({"source": batch["encoder_token_ids"]})
    with pytest.raises(ValueError, match="takes a dict"):
        model(batch["encoder_token_ids"])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda b: {**b, "encoder_token_ids": b["encoder_token_ids"].astype("float32")}, "integer token ids"),
        (lambda b: {**b, "decoder_token_ids": b["decoder_token_ids"][0]}, "must be \\(batch, length\\)"),
        (lambda b: {**b, "encoder_token_ids": np.ones((3, 17), "int32")}, "more than max_sequence_length=16"),
    ],
    ids=["float_ids", "rank_1", "too_long"],
)
def test_bad_token_ids_raise(change, match, batch):
    with pytest.raises(ValueError, match=match):
        make_model()(change(batch))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA compilation through tf.function")
@pytest.mark.parametrize("position", ["sinusoidal", "relative", "rotary"])
def test_cached_step_compiles_under_xla_with_a_tensor_index(position, batch):
    import tensorflow as tf

    model = make_model(position=position, dropout=0.0)
    logits = to_numpy(model(batch))
    encoder_output, encoder_mask = model.encode(batch["encoder_token_ids"])
    self_cache, cross_cache = model.initialize_cache(encoder_output, max_length=7)
    step = tf.function(model.call_with_cache, jit_compile=True, reduce_retracing=True)
    steps = []
    for i in range(7):
        token = batch["decoder_token_ids"][:, i : i + 1]
        step_logits, self_cache, cross_cache = step(token, self_cache, cross_cache, tf.constant(i), encoder_mask)
        steps.append(to_numpy(step_logits))
    assert step.experimental_get_tracing_count() == 1  # one program for every position
    real = batch["decoder_token_ids"] != 0
    assert_close(np.concatenate(steps, 1)[real], logits[real], atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_then_float32_inference(policy, batch, tmp_path):
    if policy == "mixed_float16" and keras.backend.backend() == "jax":
        pytest.skip("JAX's CPU dot_general refuses float16 inputs with float32 accumulation (F16_F16_F32).")
    model = make_model(dtype=policy, tie_embeddings=True)
    model.compile(warmup_steps=10)
    labels = np.roll(batch["decoder_token_ids"], -1, axis=1)
    history = model.fit(batch, labels, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(w.dtype == "float32" for w in model.weights)
    mixed_logits = to_numpy(model(batch))

    kt.models.set_dtype_policy(model, "float32")
    assert {layer.compute_dtype for layer in model._flatten_layers()} == {"float32"}
    reference = make_model(tie_embeddings=True)
    reference(batch)
    reference.set_weights(model.get_weights())
    logits = to_numpy(model(batch))
    assert_close(logits, reference(batch), atol=0, rtol=0)
    # Half-precision compute is close to float32 compute, not equal to it.
    assert np.abs(mixed_logits - logits).max() < 0.25 * np.abs(logits).max()
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, compile=False)
    assert restored.compute_dtype == "float32"
    assert_close(restored(batch), logits, atol=0, rtol=0)


def test_set_dtype_policy_refuses_to_change_variable_dtypes(batch):
    model = make_model()
    model(batch)
    with pytest.raises(ValueError, match="Only the compute dtype"):
        kt.models.set_dtype_policy(model, "bfloat16")


def test_attention_scores_through_call_and_generate(batch):
    source = batch["encoder_token_ids"]
    model = make_model(dropout=0.0)
    inputs = batch
    logits, scores = model(inputs, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(logits), to_numpy(model(inputs)), atol=1e-5)  # same forward pass
    assert sorted(scores) == ["cross_attention", "decoder_self_attention", "encoder_self_attention"]
    shapes = {"encoder_self_attention": (3, 4, 9, 9), "decoder_self_attention": (3, 4, 7, 7), "cross_attention": (3, 4, 7, 9)}
    for kind, layers in scores.items():
        assert len(layers) == 2 and all(tuple(layer.shape) == shapes[kind] for layer in layers), kind
    cross = to_numpy(scores["cross_attention"][1])
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
    assert np.abs(cross[1, :, :, 6:]).max() < 1e-6  # padded source positions get no attention
    assert np.triu(to_numpy(scores["decoder_self_attention"][0])[0, 0], 1).max() < 1e-6  # causal

    # generate: the tokens, and the weights that produced each of them (row t made token t).
    token_ids, generated_scores = model.generate(source, return_attention_scores=True, max_length=10)
    np.testing.assert_array_equal(to_numpy(token_ids), to_numpy(model.generate(source, max_length=10)))
    decoder_ids = np.concatenate([np.full((3, 1), kt.START_ID, "int32"), to_numpy(token_ids)[:, :-1]], 1)
    replayed = to_numpy(model({"encoder_token_ids": source, "decoder_token_ids": decoder_ids})).argmax(-1)
    produced = to_numpy(token_ids)
    for row in range(3):  # up to the end token, the replayed pass predicts what greedy produced
        length = (list(produced[row]).index(kt.END_ID) + 1) if kt.END_ID in produced[row] else 10
        np.testing.assert_array_equal(replayed[row, :length], produced[row, :length])
    assert tuple(generated_scores["cross_attention"][0].shape) == (3, 4, 10, 9)
    with pytest.raises(ValueError, match="best beam"):
        model.generate(source, method="beam", return_attention_scores=True)
