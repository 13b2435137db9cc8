"""GPTQ rounding of the dynamic-int8 weights: the algorithm, the calibration hooks, the converter round trip."""

import numpy as np
import pytest

from tests.models.conftest import make_model
from tests.test_case import to_numpy


def nearest(kernel):
    """Per-output-channel round to nearest, as TFLite's dynamic-range quantizer does: `(Q, s)`."""
    scale = np.abs(kernel).max(axis=0) / 127
    return np.clip(np.round(kernel / scale), -127, 127).astype("int8"), scale.astype("float32")


def correlated_inputs(rng, rows, features):
    """Inputs whose features are strongly correlated (and of unequal size), as a layer's activations are."""
    mixing = rng.normal(size=(features, features)) * rng.uniform(0.1, 2.0, size=(features, 1))
    return rng.normal(size=(rows, features)) @ mixing + rng.normal(size=(1, features))


def test_gptq_changes_the_layers_output_less_than_rounding_to_nearest():
    from export.gptq import gptq_int8

    rng = np.random.default_rng(0)
    x = correlated_inputs(rng, 2000, 96)
    kernel = rng.normal(size=(96, 48)) * 0.05
    quantized, scale = gptq_int8(kernel, x.T @ x)
    rounded, nearest_scale = nearest(kernel)
    np.testing.assert_allclose(scale, nearest_scale, rtol=1e-6)  # the converter's scales
    error = np.linalg.norm(x @ (quantized * scale - kernel))
    nearest_error = np.linalg.norm(x @ (rounded * scale - kernel))
    assert error < 0.8 * nearest_error, (error, nearest_error)  # 0.59-0.67 measured over seeds
    assert not np.array_equal(quantized, rounded)
    # Each weight moves by about one int8 step at most: it is still a rounding of the same matrix.
    assert np.abs(quantized.astype(int) - kernel / scale).max() < 2.5


def test_gptq_with_independent_inputs_rounds_to_nearest():
    from export.gptq import gptq_int8

    kernel = np.random.default_rng(1).normal(size=(40, 24))
    quantized, _ = gptq_int8(kernel, np.diag(np.full(40, 3.0)))  # uncorrelated features: no error to move
    np.testing.assert_array_equal(quantized, nearest(kernel)[0])


def test_requantizing_gptq_weights_gives_back_the_same_int8_values():
    from export.gptq import gptq_int8

    rng = np.random.default_rng(2)
    x = correlated_inputs(rng, 500, 64)
    kernel = rng.normal(size=(64, 80)).astype("float32")
    kernel[:, 3] = 0.0  # an all-zero channel keeps scale 1 and zeros
    kernel[5] = 0.0  # a dead input feature
    x[:, 5] = 0.0
    quantized, scale = gptq_int8(kernel, x.T @ x)
    frozen = quantized.astype("float32") * scale  # what the exported module freezes the kernel to
    again, again_scale = nearest(frozen[:, np.abs(frozen).max(0) > 0])
    np.testing.assert_array_equal(again, quantized[:, np.abs(frozen).max(0) > 0])
    assert (np.abs(quantized[:, np.arange(80) != 3]).max(axis=0) == 127).all()  # each channel's scale survives
    assert (quantized[:, 3] == 0).all()


def test_gptq_refuses_mismatched_shapes():
    from export.gptq import gptq_int8

    with pytest.raises(ValueError, match="Gram matrix"):
        gptq_int8(np.ones((4, 3)), np.eye(3))


def test_gram_matrices_see_each_projections_own_inputs_and_leave_the_model_as_it_was():
    from export.gptq import GramMatrices

    model = make_model(dropout=0.0)
    ids = np.array([[5, 9, 13, 7, 21]], "int32")
    decoder_ids = np.array([[1, 8, 30, 4]], "int32")
    before = to_numpy(model({"encoder_token_ids": ids, "decoder_token_ids": decoder_ids}))
    grams = GramMatrices(model)
    with grams.record():
        encoder_output, mask = model.encode(ids)
        model.decode(decoder_ids, encoder_output, mask)
    embedded = to_numpy(model.encoder_embedding(ids))[0].astype("float64")  # the first encoder layer's input
    paths = [p for p in grams.gram if "encoder" in p and "query" in p]
    first = sorted(paths)[0]
    np.testing.assert_allclose(grams.gram[first], embedded.T @ embedded, rtol=1e-5, atol=1e-5)
    assert grams.rows[first] == ids.shape[1]
    # Q, K and V of a self-attention layer read the same input; cross-attention's K/V read the encoder output.
    for name in ("key", "value"):
        np.testing.assert_allclose(grams.gram[first.replace("query", name)], grams.gram[first], rtol=1e-6)
    cross = [p for p in grams.gram if "cross" in p and "/key/" in p]
    assert cross and all(grams.rows[p] == ids.shape[1] for p in cross)
    assert len(grams.gram) == len(grams.dense_layers)  # every Dense saw inputs
    after = to_numpy(model({"encoder_token_ids": ids, "decoder_token_ids": decoder_ids}))
    np.testing.assert_array_equal(after, before)
    assert not any("call" in layer.__dict__ for layer in grams.dense_layers)
    assert not any("_project" in layer.__dict__ for layer in grams.attention_layers)


@pytest.mark.slow
def test_dynamic_int8_file_stores_exactly_the_gptq_rounded_kernels():
    from export.converter import convert
    from export.flatbuffer import int8_matrices
    from export.gptq import gptq_kernels
    from export.tflite import SIGNATURES, build_module

    model = make_model(dropout=0.0, hidden_dim=64, intermediate_dim=128, num_layers=1, max_sequence_length=8)
    rng = np.random.default_rng(3)
    source_ids = rng.integers(4, 40, size=(12, 8)).astype("int32")
    source_ids[::2, 5:] = 0
    kernels = gptq_kernels(model, source_ids)
    assert len(kernels) == 16  # encoder: 4 attention + 2 feed-forward; decoder: 4 + 4 cross-attention + 2
    nearest_file = convert(build_module(model, quantization="dynamic_int8"), SIGNATURES, "dynamic_int8")
    gptq_file = convert(build_module(model, quantization="dynamic_int8", kernels=kernels), SIGNATURES, "dynamic_int8")
    assert abs(len(gptq_file) - len(nearest_file)) < 0.01 * len(nearest_file)  # same ops and sizes, other values
    def contains(matrices, rows):
        # Fused projections are stored as row blocks of one matrix; a query's scale may be folded into its
        # weights (a power of two here), which changes the float values but not the int8 ones.
        return any(
            np.array_equal(matrix[start : start + len(rows)], rows)
            for matrix in matrices
            if matrix.shape[1] == rows.shape[1]
            for start in range(0, matrix.shape[0] - len(rows) + 1, len(rows))
        )

    expected = {path: nearest(kernel)[0].T for path, kernel in kernels.items()}  # (out, in) int8 values of Q * s
    for path, rows in expected.items():
        assert contains(int8_matrices(gptq_file), rows), path
    # Rounded to nearest, the same matrices hold other int8 values.
    assert not any(contains(int8_matrices(nearest_file), rows) for rows in expected.values())
    # The model itself is untouched.
    for layer in model._flatten_layers():
        if hasattr(layer, "kernel") and layer.kernel.path in kernels:
            assert not np.array_equal(to_numpy(layer.kernel), kernels[layer.kernel.path])


def test_frozen_values_are_checked():
    from export.module import ExportModule

    model = make_model(dropout=0.0, max_sequence_length=8)
    model({"encoder_token_ids": np.ones((1, 3), "int32"), "decoder_token_ids": np.ones((1, 2), "int32")})
    kernel = next(v for v in model.variables if v.path.endswith("kernel"))
    with pytest.raises(ValueError, match="freeze=True"):
        ExportModule(model, 8, frozen_values={kernel.path: np.zeros(kernel.shape)})
    with pytest.raises(ValueError, match="does not have"):
        ExportModule(model, 8, freeze=True, frozen_values={"nowhere/kernel": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="shape"):
        ExportModule(model, 8, freeze=True, frozen_values={kernel.path: np.zeros((1, 1))})
    module = ExportModule(model, 8, freeze=True, frozen_values={kernel.path: np.zeros(kernel.shape)})
    index = [v.path for v in model.variables].index(kernel.path)
    assert not module._frozen[index].numpy().any() and to_numpy(kernel).any()


def test_one_export_calibrates_once_for_the_tflite_and_text_files(monkeypatch):
    """`--format all --int8-rounding gptq` writes two dynamic-int8 files of one run: GPTQ runs once."""
    import types

    import export
    import export.tflite as tflite

    calls = []
    monkeypatch.setattr(tflite, "encode_sentences", lambda run, sentences: sentences)
    monkeypatch.setattr(
        tflite, "gptq_kernels", lambda model, ids, progress=None: calls.append(len(ids)) or {"kernel": len(ids)}
    )
    run = types.SimpleNamespace(family="translate", model=None, gptq_kernels={}, path="run")
    options = export.ExportOptions(int8_rounding="gptq", calibration_sentences=("a b", "c d", "e"))
    first = tflite.rounded_kernels(run, options, "dynamic_int8")
    assert tflite.rounded_kernels(run, options, "dynamic_int8") is first  # the text exporter's call
    assert calls == [3]
    other = export.ExportOptions(int8_rounding="gptq", calibration_sentences=("a b",))
    assert tflite.rounded_kernels(run, other, "dynamic_int8") == {"kernel": 1}  # other sentences: calibrated again
    assert calls == [3, 1]
    assert tflite.rounded_kernels(run, options, "float16") is None
    assert tflite.rounded_kernels(run, export.ExportOptions(calibration_sentences=("a",)), "dynamic_int8") is None
