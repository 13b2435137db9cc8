import os

import keras
import numpy as np
import pytest

import keras_transformer as kt
from tests import reference
from tests.test_case import assert_close


def _hand_loss(labels, logits, eps):
    """Per-token -sum(q log p) with q = (1 - eps) one_hot + eps / V, averaged over real tokens."""
    vocab = logits.shape[-1]
    log_p = np.log(reference.softmax(logits.astype("float64")))
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] == 0:
                continue
            q = np.full(vocab, eps / vocab)
            q[labels[b, t]] += 1 - eps
            total += -(q * log_p[b, t]).sum()
            count += 1
    return total / count


LABELS = np.array([[5, 3, 0, 0], [2, 7, 1, 0]])
LOGITS = np.random.default_rng(0).normal(size=(2, 4, 9)).astype("float32")


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_loss_matches_hand_computation(eps):
    loss = kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=eps)
    assert_close(loss(LABELS, LOGITS), _hand_loss(LABELS, LOGITS, eps), atol=1e-5)


def test_loss_ignores_padding_positions_whatever_their_logits():
    loss = kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    changed = LOGITS.copy()
    changed[LABELS == 0] = 100.0
    assert_close(loss(LABELS, changed), loss(LABELS, LOGITS), atol=1e-6)
    # More padding columns do not dilute the mean.
    padded_labels = np.pad(LABELS, ((0, 0), (0, 5)))
    padded_logits = np.pad(LOGITS, ((0, 0), (0, 5), (0, 0)))
    assert_close(loss(padded_labels, padded_logits), loss(LABELS, LOGITS), atol=1e-6)


def test_loss_without_smoothing_equals_keras_sparse_crossentropy_on_real_tokens():
    ours = kt.losses.MaskedSparseCategoricalCrossentropy()(LABELS, LOGITS)
    real = LABELS != 0
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS[real], LOGITS[real])
    assert_close(ours, keras_loss, atol=1e-6)


def test_loss_from_probabilities_and_reductions():
    probabilities = reference.softmax(LOGITS)
    from_probs = kt.losses.MaskedSparseCategoricalCrossentropy(from_logits=False)(LABELS, probabilities)
    assert_close(from_probs, kt.losses.MaskedSparseCategoricalCrossentropy()(LABELS, LOGITS), atol=1e-5)
    per_token = kt.losses.MaskedSparseCategoricalCrossentropy(reduction=None)(LABELS, LOGITS)
    assert tuple(per_token.shape) == (2, 4)
    assert np.all(np.asarray(per_token)[LABELS == 0] == 0)


def test_loss_config_round_trip_and_bad_arguments():
    loss = kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.2, pad_id=5)
    clone = kt.losses.MaskedSparseCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.label_smoothing == 0.2 and clone.pad_id == 5
    with pytest.raises(ValueError, match="label_smoothing"):
        kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=1.0)
    with pytest.raises(ValueError, match="predictions"):
        kt.losses.MaskedSparseCategoricalCrossentropy()(LABELS, LOGITS[..., 0])


def test_masked_accuracy_counts_only_real_tokens():
    metric = kt.metrics.MaskedAccuracy()
    predictions = np.argmax(LOGITS, -1)
    metric.update_state(LABELS, LOGITS)
    real = LABELS != 0
    assert_close(metric.result(), (predictions == LABELS)[real].mean())
    metric.reset_state()
    one_hot = np.eye(9)[LABELS]
    metric.update_state(LABELS, one_hot)
    assert float(metric.result()) == 1.0
    metric.update_state(LABELS, one_hot, sample_weight=np.array([0.0, 1.0]))
    assert float(metric.result()) == 1.0


def test_schedule_matches_the_papers_formula():
    schedule = kt.schedules.TransformerSchedule(hidden_dim=512, warmup_steps=4000)
    for step_num in [1, 100, 3999, 4000, 4001, 10000, 100000]:
        expected = 512**-0.5 * min(step_num**-0.5, step_num * 4000**-1.5)
        # Keras passes the iteration count, which starts at 0.
        assert_close(schedule(step_num - 1), expected, rtol=1e-5)
    peak = float(schedule(3999))
    assert float(schedule(3000)) < peak and float(schedule(5000)) < peak


def test_schedule_scale_config_and_bad_arguments():
    schedule = kt.schedules.TransformerSchedule(64, 100, scale=2.0)
    assert_close(schedule(9), 2.0 * 64**-0.5 * 10 * 100**-1.5, rtol=1e-5)
    restored = kt.schedules.TransformerSchedule.from_config(schedule.get_config())
    assert_close(restored(9), schedule(9))
    with pytest.raises(ValueError, match="warmup_steps"):
        kt.schedules.TransformerSchedule(64, 0)


def test_default_optimizer_is_the_papers_adam():
    optimizer = kt.optimizers.transformer_adam(512)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.98, 1e-9)
    assert isinstance(optimizer._learning_rate, kt.schedules.TransformerSchedule)


@pytest.mark.parametrize("compiled", [False, True])
def test_adam_updates_as_keras_adam(compiled):
    """Our `Adam` (one fused kernel per variable on TensorFlow) moves weights and moments as Keras's does."""

    class KerasUpdate(kt.optimizers.Adam):
        update_step = keras.optimizers.Adam.update_step

    rng = np.random.default_rng(0)
    shapes = [(40, 24), (24,), (3, 5, 7)]
    initial = [rng.normal(size=shape).astype("float32") for shape in shapes]
    gradients = [[rng.normal(size=shape).astype("float32") for shape in shapes] for _ in range(4)]
    results = []
    for optimizer_class in (kt.optimizers.Adam, KerasUpdate):
        variables = [keras.Variable(value) for value in initial]
        optimizer = optimizer_class(
            kt.schedules.TransformerSchedule(16, 3), beta_1=0.9, beta_2=0.98, epsilon=1e-9
        )
        optimizer.build(variables)
        apply = lambda grads: optimizer.apply(grads, variables)  # noqa: E731
        if compiled and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            apply = tf.function(apply, jit_compile=True)
        for grads in gradients:
            apply([keras.ops.convert_to_tensor(g) for g in grads])
        moments = [keras.ops.convert_to_numpy(m) for m in optimizer._momentums + optimizer._velocities]
        results.append(([keras.ops.convert_to_numpy(v) for v in variables], moments))
        assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 4
    (weights, moments), (keras_weights, keras_moments) = results
    assert max(float(np.abs(w - w0).max()) for w, w0 in zip(weights, initial)) > 0.1  # the weights moved
    for ours, theirs in zip(weights + moments, keras_weights + keras_moments):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_time_limit_stops_fit_inside_the_first_epoch_and_still_validates():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    seen = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    limit = kt.callbacks.TimeLimit(minutes=1e-9)
    history = model.fit(x, y, batch_size=8, epochs=5, validation_data=(x, y), callbacks=[limit, counter], verbose=0)
    assert seen == [0] and limit.stopped_at_epoch == 0  # one batch of eight, then the epoch ended
    assert len(history.history["val_loss"]) == 1  # the cut epoch was still validated
    with pytest.raises(ValueError, match="minutes=0"):
        kt.callbacks.TimeLimit(0)


def test_heartbeat_prints_a_line_once_its_interval_has_passed_inside_an_epoch():
    import io

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
    clock, stream = [0.0], io.StringIO()
    tick = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: clock.__setitem__(0, clock[0] + 7))
    heartbeat = kt.callbacks.Heartbeat(interval=20, stream=stream, clock=lambda: clock[0])
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[tick, heartbeat], verbose=0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Compiling the training step: the first batch takes longer."
    # 7 s a batch, 8 batches an epoch: a line at 21 s and 42 s of each epoch (the clock restarts with it)
    assert [line.split(", loss")[0] for line in lines[1:]] == [
        "  epoch 1: step 3/8, 21 s", "  epoch 1: step 6/8, 42 s", "  epoch 2: step 3/8, 21 s", "  epoch 2: step 6/8, 42 s"
    ]  # fmt: skip
    assert all(float(line.split("loss ")[1]) >= 0 for line in lines[1:])
    with pytest.raises(ValueError, match="interval=0"):
        kt.callbacks.Heartbeat(0)


def _steps_of_cooldown(fraction, epochs, minutes=None, seconds_per_batch=None, monkeypatch=None):
    """Fit a bias with a constant gradient under Adam, one batch per epoch (each update moves it by the rate).

    Returns the learning rate each update used (its move), the window, and the model.
    """
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=kt.optimizers.Adam(0.01, cooldown=True), loss=lambda y, p: keras.ops.mean(p))
    clock = [0.0]
    if seconds_per_batch is not None:
        monkeypatch.setattr(kt.callbacks.time, "monotonic", lambda: clock[0])
    biases = []

    def tick(batch, logs):
        clock[0] += seconds_per_batch or 0.0

    def read(epoch, logs):  # at epoch ends: JAX writes its weights back to the variables only then
        biases.append(float(keras.ops.convert_to_numpy(model.layers[-1].bias)[0]))

    record = keras.callbacks.LambdaCallback(on_train_batch_end=tick, on_epoch_end=read)
    cooldown = kt.callbacks.Cooldown(fraction, minutes=minutes)
    x = np.zeros((8, 1), "float32")
    model.fit(x, x, batch_size=8, epochs=epochs, callbacks=[record, cooldown], verbose=0)
    moves = -np.diff([0.0] + biases)
    return moves, cooldown.window, model


def test_cooldown_lets_the_learning_rate_fall_linearly_to_zero_over_the_last_part_of_the_epochs():
    moves, window, model = _steps_of_cooldown(0.5, epochs=16)
    assert window == [8.0, 16.0]
    expected = 0.01 * np.array([1] * 8 + [(16 - i) / 8 for i in range(8, 16)])
    np.testing.assert_allclose(moves, expected, rtol=1e-4, atol=1e-7)  # read inside the compiled step
    assert keras.ops.convert_to_numpy(model.optimizer.learning_rate) == pytest.approx(0.0)


def test_cooldown_under_a_time_limit_decays_towards_the_budgets_end(monkeypatch):
    # 5 s per one-batch epoch: a 1-minute budget holds 12 updates (the 14 epochs would take 70 s); the window
    # is set once the next epoch end would pass the cooldown's start (after epoch 5, at update 5).
    moves, window, _ = _steps_of_cooldown(0.5, epochs=14, minutes=1, seconds_per_batch=5, monkeypatch=monkeypatch)
    assert window == [6.0, 12.0]
    expected = 0.01 * np.array([1] * 6 + [(12 - i) / 6 for i in range(6, 12)] + [0] * 2)
    np.testing.assert_allclose(moves, expected, rtol=1e-4, atol=1e-7)


def test_cooldown_window_survives_saving_the_optimizer(tmp_path):
    _, window, model = _steps_of_cooldown(0.25, epochs=8)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    inputs = keras.Input((1,))
    other = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    other.compile(optimizer=kt.optimizers.Adam(0.01, cooldown=True), loss="mse")
    other.optimizer.build(other.trainable_variables)
    other.load_weights(str(tmp_path / "w.weights.h5"))
    assert list(keras.ops.convert_to_numpy(other.optimizer.cooldown_window)) == window == [6.0, 8.0]
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
    assert restored.cooldown and isinstance(restored, kt.optimizers.Adam)


def test_cooldown_refuses_bad_fractions_and_optimizers_without_a_window():
    for fraction in (0, 1, -0.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            kt.callbacks.Cooldown(fraction)
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=kt.optimizers.Adam(0.01), loss="mse")
    with pytest.raises(ValueError, match="cooldown=True"):
        model.fit(np.zeros((8, 1)), np.zeros((8, 1)), callbacks=[kt.callbacks.Cooldown(0.5)], verbose=0)
    np.testing.assert_allclose(kt.optimizers.cooldown_factor(5, [-1.0, -1.0]), 1.0)
    np.testing.assert_allclose([kt.optimizers.cooldown_factor(i, [4.0, 8.0]) for i in (0, 4, 6, 8, 9)],
                               [1.0, 1.0, 0.5, 0.0, 0.0])  # fmt: skip


def _dense_model(units=3):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dropout(0.1)(keras.layers.Dense(units)(inputs))
    return keras.Model(inputs, outputs)


def test_epoch_weights_keep_the_last_epochs_and_average_to_their_mean(tmp_path):
    model = _dense_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.default_rng(0).normal(size=(2, 32, 4)).astype("float32")[0], np.ones((32, 3), "float32")
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append([keras.ops.convert_to_numpy(w) for w in model.weights])
    )
    weights = kt.callbacks.EpochWeights(str(tmp_path / "w"), keep=3)
    model.fit(x, y, batch_size=8, epochs=5, callbacks=[record, weights], verbose=0)
    assert [os.path.basename(p) for p in weights.paths()] == ["epoch-0003.npz", "epoch-0004.npz", "epoch-0005.npz"]
    assert not [name for name in os.listdir(tmp_path / "w") if name.startswith(".tmp-")]

    kt.callbacks.average_weights(model, weights.paths())
    for variable, *values in zip(model.weights, *snapshots[2:]):
        assert_close(keras.ops.convert_to_numpy(variable), np.mean(values, axis=0), atol=1e-6)
    # Averaging one file restores that epoch exactly.
    kt.callbacks.average_weights(model, weights.paths()[:1])
    for variable, value in zip(model.weights, snapshots[2]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_average_weights_refuses_missing_corrupt_and_mismatched_files(tmp_path):
    model = _dense_model()
    with pytest.raises(ValueError, match="No weight files"):
        kt.callbacks.average_weights(model, [])
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable weight file"):
        kt.callbacks.average_weights(model, [str(tmp_path / "bad.npz")])
    kt.callbacks.save_weights(str(tmp_path / "other.npz"), _dense_model(units=5))
    with pytest.raises(ValueError, match="another model"):
        kt.callbacks.average_weights(model, [str(tmp_path / "other.npz")])
    with pytest.raises(ValueError, match="keep=0"):
        kt.callbacks.EpochWeights(str(tmp_path), keep=0)
