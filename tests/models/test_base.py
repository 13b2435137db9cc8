"""What every model family shares (`models.base`): architecture defaults, presets, compile defaults, generate settings."""

import keras
import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.decoding import GenerationSettings
from keras_transformer.models import ARCHITECTURE, ArchitectureModel
from tests.models.conftest import make_model

TINY = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, max_sequence_length=8)


def families():
    backbone = kt.TransformerEncoderModel(20, **TINY)
    return {
        "transformer": kt.Transformer(20, 30, **TINY),
        "lm": kt.TransformerLM(20, **TINY),
        "backbone": backbone,
        "classifier": kt.TransformerClassifier(backbone, 3),
    }


def test_architecture_defaults_are_written_once_and_shared():
    for cls, args in ((kt.Transformer, (20, 30)), (kt.TransformerLM, (20,)), (kt.TransformerEncoderModel, (20,))):
        assert issubclass(cls, ArchitectureModel)
        model = cls(*args, num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32)
        config = model.get_config()
        for name, default in ARCHITECTURE.items():
            expected = {"num_layers": 1, "hidden_dim": 16, "num_heads": 2, "intermediate_dim": 32}.get(name, default)
            assert config[name] == expected and getattr(model, name) == expected, (cls.__name__, name)


def test_a_misspelled_architecture_argument_is_refused():
    for cls, args in ((kt.Transformer, (20, 30)), (kt.TransformerLM, (20,)), (kt.TransformerEncoderModel, (20,))):
        with pytest.raises((TypeError, ValueError), match="num_layer"):
            cls(*args, num_layer=2)


def test_every_family_builds_from_a_preset():
    assert kt.TransformerLM.from_preset("tiny", vocabulary_size=20).hidden_dim == 64
    assert kt.TransformerEncoderModel.from_preset("small", vocabulary_size=20, num_layers=1).num_layers == 1
    assert kt.Transformer.from_preset("tiny", source_vocabulary_size=9, target_vocabulary_size=9).num_heads == 4


def test_compile_auto_takes_each_family_s_defaults():
    models = families()
    for name, model in models.items():
        model.compile()
        assert model.optimizer is not None, name
    transformer, lm, classifier = models["transformer"], models["lm"], models["classifier"]
    # The paper's optimizer (beta_2 0.98, the warm-up schedule) and label smoothing 0.1 for the encoder-decoder.
    assert transformer.optimizer.beta_2 == 0.98
    assert isinstance(transformer.optimizer._learning_rate, kt.schedules.TransformerSchedule)
    assert transformer.loss.label_smoothing == 0.1 and lm.loss.label_smoothing == 0.0
    assert isinstance(classifier.loss, keras.losses.SparseCategoricalCrossentropy)
    lm.compile(learning_rate=0.5, label_smoothing=0.2)
    assert float(lm.optimizer.learning_rate) == pytest.approx(0.5) and lm.loss.label_smoothing == 0.2
    with pytest.raises(ValueError, match="label smoothing"):
        classifier.compile(label_smoothing=0.1)


def test_generation_settings_are_declared_once_and_checked():
    model = make_model(dropout=0.0)
    ids = np.array([[5, 6, 7, 0]], "int32")
    assert model.generate(ids, max_length=5).shape == (1, 5)
    with pytest.raises(ValueError, match="Unknown `generate` argument"):
        model.generate(ids, beam_width=4)
    with pytest.raises(ValueError, match="Unknown `generate` argument"):
        kt.TransformerLM(20, **TINY).generate(ids, beam_size=2, length_penalty=1.0, top_q=0.5)
    settings = GenerationSettings.from_kwargs(method="beam", beam_size=2)
    assert settings.key() == ("beam", None, 2, 0.6, "gnmt", False) and GenerationSettings().method == "greedy"
    assert GenerationSettings.from_kwargs(method="beam", beam_size=2, exact_stop=True).key()[-1] is True


def test_the_model_states_its_cache_shapes():
    model = make_model(dropout=0.0)
    source = np.array([[5, 6, 7, 0, 0]], "int32")
    encoder_output, _ = model.encode(source)
    self_cache, cross_cache = model.initialize_cache(encoder_output, 6, stacked=True)
    self_shape, cross_shape = model.cache_shapes(6, source.shape[1])
    assert tuple(self_cache.shape) == (1, *self_shape) and tuple(cross_cache.shape) == (1, *cross_shape)
    assert model.cache_shapes(6)[1][1] is None


def test_generate_refuses_ids_outside_the_vocabulary_and_a_zero_max_length():
    model = make_model(dropout=0.0)
    with pytest.raises(ValueError, match="outside \\[0, 40\\)"):
        model.generate(np.array([[5, -1, 0]], "int32"))
    with pytest.raises(ValueError, match="outside \\[0, 40\\)"):
        model.generate(np.array([[5, 40, 0]], "int32"))
    with pytest.raises(ValueError, match="max_length"):
        model.generate(np.array([[5, 6, 0]], "int32"), max_length=0)
    lm = kt.TransformerLM(20, **TINY)
    with pytest.raises(ValueError, match="outside \\[0, 20\\)"):
        lm.generate(np.array([[25]], "int32"), max_length=4)
    with pytest.raises(ValueError, match="max_length"):
        lm.generate(np.array([[5]], "int32"), max_length=0)


def _padded_text_batch(vocabulary, rows=8, length=7, seed=0):
    """Teacher-forcing batch: `[start] y`, labels `y [end]`, rows of 1..length-1 tokens, 0-padded."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, vocabulary, (rows, length)).astype("int32")
    labels = np.zeros_like(inputs)
    for row in range(rows):
        n = int(rng.integers(1, length))
        inputs[row, 0], inputs[row, n + 1 :] = 1, 0
        labels[row, :n], labels[row, n] = inputs[row, 1 : n + 1], 2
    return inputs, labels


@pytest.mark.parametrize("family", ["transformer", "lm"])
def test_training_projects_only_real_tokens_and_updates_as_over_every_position(family):
    inputs, labels = _padded_text_batch(20)
    source = np.random.default_rng(1).integers(3, 20, (8, 6)).astype("int32")
    x = {"encoder_token_ids": source, "decoder_token_ids": inputs} if family == "transformer" else inputs
    runs = {}
    for pack in (True, False):
        keras.utils.set_random_seed(1)
        model = kt.Transformer(20, 20, **TINY) if family == "transformer" else kt.TransformerLM(20, **TINY)
        model.project_real_tokens = pack
        # SGD: Adam would turn the rounding noise of near-zero gradients into full-size steps.
        model.compile(optimizer=keras.optimizers.SGD(0.5), label_smoothing=0.1)
        shapes, logits = [], model.logits
        model.logits = lambda hidden, shapes=shapes, logits=logits: (shapes.append(len(hidden.shape)), logits(hidden))[1]
        history = model.fit(x, labels, batch_size=8, epochs=4, shuffle=False, verbose=0).history
        runs[pack] = history, model.get_weights(), shapes
    (packed, packed_weights, packed_ranks), (full, full_weights, full_ranks) = runs[True], runs[False]
    assert full_ranks and set(full_ranks) == {3}
    if keras.backend.backend() == "tensorflow":  # the packing train step (`ModelBase.train_step`)
        assert packed_ranks and set(packed_ranks) == {2}  # (N, d_model): the real label positions only
    np.testing.assert_allclose(packed["loss"], full["loss"], rtol=1e-5)
    np.testing.assert_allclose(packed["accuracy"], full["accuracy"], rtol=1e-6)
    assert packed["loss"][-1] < packed["loss"][0] - 0.1
    for a, b in zip(packed_weights, full_weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    if keras.backend.backend() == "tensorflow":  # XLA steps need static shapes: they project every position
        model = kt.Transformer(20, 20, **TINY)
        model.compile(jit_compile=True)
        assert not model._packs_real_tokens()
