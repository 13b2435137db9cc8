"""The battery of checks every layer goes through (see shared STYLE)."""

import os

import keras
import numpy as np
from keras import ops


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=atol, rtol=rtol)


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _first(outputs):
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _symbolic_input(x):
    x = np.asarray(x)
    return keras.Input(shape=x.shape[1:], dtype=str(x.dtype), batch_size=None)


def check_layer(
    layer_cls,
    init_kwargs,
    inputs,
    expected_output_shape,
    call_kwargs=None,
    run_training_step=True,
    run_mixed_precision=True,
    tmp_path=None,
):
    """Shapes (eager and symbolic), config and `.keras` round-trips with
    identical outputs, one training step, and mixed precision.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        inputs: one array or a tuple of arrays, passed positionally.
        expected_output_shape: shape of the (first) output.
        call_kwargs: non-tensor call arguments.
        tmp_path: a directory for the `.keras` round-trip.
    """
    call_kwargs = call_kwargs or {}
    inputs = tuple(np.asarray(x) for x in _as_tuple(inputs))

    # Eager shapes and dtype.
    layer = layer_cls(**init_kwargs)
    outputs = _first(layer(*inputs, **call_kwargs))
    assert tuple(outputs.shape) == tuple(expected_output_shape)
    if np.issubdtype(np.asarray(to_numpy(outputs)).dtype, np.floating):
        assert dtype_name(outputs) == "float32"

    # Config round-trip: same config, and same outputs with the same weights.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(*inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    assert_close(_first(clone(*inputs, **call_kwargs)), outputs)

    # Symbolic shapes, in a functional model.
    symbolic = [_symbolic_input(x) for x in inputs]
    model_layer = layer_cls(**init_kwargs)
    symbolic_outputs = _first(model_layer(*symbolic, **call_kwargs))
    assert tuple(symbolic_outputs.shape) == (None,) + tuple(expected_output_shape[1:])
    model = keras.Model(symbolic, symbolic_outputs)
    model_layer.set_weights(layer.get_weights())
    assert_close(model(list(inputs)), outputs)

    # `.keras` round-trip.
    if tmp_path is not None:
        path = os.path.join(str(tmp_path), "layer.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        assert_close(restored(list(inputs)), outputs)

    # One training step changes the weights and gives a finite loss.
    if run_training_step and layer.trainable_weights:
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        before = [to_numpy(w).copy() for w in model.trainable_weights]
        target = np.random.default_rng(0).normal(size=outputs.shape).astype("float32")
        history = model.fit(list(inputs), target, batch_size=len(target), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        after = [to_numpy(w) for w in model.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after))

    # Mixed precision: float16 compute, float32 variables, finite outputs.
    if run_mixed_precision:
        mixed = layer_cls(**init_kwargs, dtype="mixed_float16")
        mixed_outputs = _first(mixed(*inputs, **call_kwargs))
        if np.issubdtype(np.asarray(to_numpy(outputs)).dtype, np.floating):
            assert dtype_name(mixed_outputs) == "float16"
        assert np.all(np.isfinite(to_numpy(ops.cast(mixed_outputs, "float32"))))
        assert all(dtype_name(w) == "float32" for w in mixed.weights)
    return layer, outputs


def check_dropout_only_in_training(layer, inputs, call_kwargs=None):
    """Inference is deterministic; training with dropout is not."""
    call_kwargs = call_kwargs or {}
    inputs = _as_tuple(inputs)
    first = _first(layer(*inputs, training=False, **call_kwargs))
    second = _first(layer(*inputs, training=False, **call_kwargs))
    assert_close(first, second, atol=0, rtol=0)
    trained = _first(layer(*inputs, training=True, **call_kwargs))
    assert not np.allclose(to_numpy(first), to_numpy(trained))
    return first
