"""Freezing layers for fine-tuning: frozen weights stay bit-identical through `fit`."""

import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.fine_tuning import frozen_layers
from tests.test_case import to_numpy

ARCH = dict(num_layers=3, hidden_dim=32, num_heads=4, intermediate_dim=64, dropout=0.1, max_sequence_length=12)


def classifier(normalize_first=False):
    backbone = kt.TransformerEncoderModel(40, normalize_first=normalize_first, **ARCH)
    return kt.TransformerClassifier(backbone, num_classes=2)


def snapshot(layer):
    return [np.array(to_numpy(v)) for v in layer.weights]


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(4, 40, size=(64, 12)).astype("int32")
    x[:, 0] = kt.START_ID
    return x, (x[:, 1] > 20).astype("int32")


@pytest.mark.parametrize("up_to", [1, 2])
def test_frozen_weights_are_bit_identical_after_fit(up_to):
    model = classifier()
    assert kt.freeze(model, up_to=up_to) == ["embedding"] + [f"layer_{i}" for i in range(up_to)]
    layers = model.backbone.transformer_layers
    frozen = [model.backbone.embedding, *layers[:up_to]]
    trained = [*layers[up_to:], model.classifier_head]
    before = {id(layer): snapshot(layer) for layer in frozen + trained}
    model.compile(learning_rate=1e-2)
    model.fit(*data(), batch_size=16, epochs=2, verbose=0)
    for layer in frozen:
        for old, new in zip(before[id(layer)], snapshot(layer)):
            np.testing.assert_array_equal(old, new)
    for layer in trained:
        assert any(not np.array_equal(old, new) for old, new in zip(before[id(layer)], snapshot(layer)))
    assert len(model.trainable_weights) < len(model.weights)


def test_freeze_all_unfreeze_and_bad_arguments():
    model = classifier(normalize_first=True)
    names = kt.freeze(model)
    assert names[-1] == "final_layer_norm" and len(names) == 5
    assert [w.path for w in model.trainable_weights] == [w.path for w in model.classifier_head.weights]
    assert frozen_layers(model) == ["embedding", "layer_0", "layer_1", "layer_2"]
    assert kt.freeze(model, up_to=0) == [] and frozen_layers(model) == []
    kt.freeze(model, up_to=3)
    kt.unfreeze(model)
    assert len(model.trainable_weights) == len(model.weights)
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(ValueError, match="up_to"):
            kt.freeze(model, up_to=bad)
    with pytest.raises(ValueError, match="backbone"):
        kt.freeze(kt.Transformer(40, 40, **ARCH))


def test_freeze_language_model_layers():
    model = kt.TransformerLM(40, **ARCH)
    assert kt.freeze(model, up_to=2) == ["embedding", "layer_0", "layer_1"]
    trainable = {w.path for w in model.trainable_weights}
    assert trainable and all("layer_2" in path for path in trainable)
