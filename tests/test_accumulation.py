"""`accumulate_steps`: k batches of B make the same update as one batch of k x B."""

import keras
import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.optimizers import PerUpdate, accumulating_adam, transformer_adam

CONFIG = dict(
    source_vocabulary_size=40, target_vocabulary_size=40, num_layers=1, hidden_dim=16, num_heads=2,
    intermediate_dim=32, dropout=0.0, max_sequence_length=12,
)  # fmt: skip


def _batches(rows, seed=0):
    """Rows without padding, so every batch of them has as many real tokens as any other of its size."""
    rng = np.random.default_rng(seed)
    source = rng.integers(4, 40, size=(rows, 9)).astype("int32")
    target = rng.integers(4, 40, size=(rows, 8)).astype("int32")
    decoder = np.concatenate([np.full((rows, 1), kt.START_ID, "int32"), target[:, :-1]], 1)
    return {"encoder_token_ids": source, "decoder_token_ids": decoder}, target


def _trained(weights, optimizer, batch_size, x, y):
    model = kt.Transformer(**CONFIG)
    model(x)
    model.set_weights(weights)
    model.compile(optimizer=optimizer)
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("accumulate_steps", [2, 4])
def test_k_batches_of_b_update_like_one_batch_of_k_b(accumulate_steps):
    batch, updates = 4, 3
    x, y = _batches(batch * accumulate_steps * updates)
    reference = kt.Transformer(**CONFIG)
    reference(x)
    weights = reference.get_weights()

    def optimizer(steps):
        # Adam's epsilon at 1e-3 rather than the paper's 1e-9: the first update is lr * g / (|g| + epsilon), so
        # with 1e-9 a gradient that is zero but for float rounding (the key biases': softmax ignores a shift)
        # moves its weight by +-lr, whichever way the rounding of either summation order went.
        schedule = kt.schedules.TransformerSchedule(16, warmup_steps=3)
        return accumulating_adam(schedule, steps, beta_1=0.9, beta_2=0.98, epsilon=1e-3)

    accumulated = _trained(weights, optimizer(accumulate_steps), batch, x, y)
    whole = _trained(weights, optimizer(1), batch * accumulate_steps, x, y)
    assert int(accumulated.optimizer.iterations) == int(whole.optimizer.iterations) == updates
    # The same learning rate at the same update: the schedule counts updates, not batches.
    assert float(accumulated.optimizer.learning_rate) == pytest.approx(float(whole.optimizer.learning_rate))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(whole.get_weights(), weights))
    assert moved > 1e-3  # the comparison is not between unchanged weights
    for a, b in zip(accumulated.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_transformer_adam_accumulates_and_survives_a_keras_file(tmp_path):
    x, y = _batches(8)
    model = kt.Transformer(**CONFIG)
    model.compile(optimizer=transformer_adam(16, warmup_steps=3, accumulate_steps=2))
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # 4 batches, 2 updates
    assert int(model.optimizer.iterations) == 2
    # The paper's schedule at update 2 (it counts from 1), not at batch 4.
    assert float(model.optimizer.learning_rate) == pytest.approx(float(kt.schedules.TransformerSchedule(16, 3)(2)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, PerUpdate)
    assert loaded.optimizer.gradient_accumulation_steps == 2
    assert int(loaded.optimizer.iterations) == 2
    with pytest.raises(ValueError, match="accumulate_steps"):
        transformer_adam(16, accumulate_steps=0)


def test_adam_sums_a_tokens_embedding_gradient_before_squaring_it():
    """Adam's first step moves no weight by more than the learning rate, embeddings included.

    On TensorFlow an embedding's gradient comes as one slice per occurrence of a token; Keras's
    Adam squared slice by slice, and the start token (in every row) moved by 1.5x the rate.
    """
    x, y = _batches(8)
    model = kt.Transformer(**CONFIG)
    model(x)
    before = model.get_weights()
    model.compile(optimizer=accumulating_adam(0.01, epsilon=1e-3))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for variable, old, new in zip(model.weights, before, model.get_weights()):
        assert float(np.abs(new - old).max()) <= 0.01 * (1 + 1e-5), variable.path
