"""What the TFLite converter is handed: each weight once, not a copy per traced function."""

import os

import numpy as np
import tensorflow as tf

from tests.models.conftest import make_model


def _directory_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def test_frozen_signatures_hold_no_weight_constants_and_save_each_weight_once(tmp_path):
    # Weights traced in as graph constants were copied into every function (and every while-loop body) of every
    # signature: a 74M-parameter model's parent process grew by 2 GB per signature and ran out of memory.
    from export.converter import _only
    from export.tflite import SIGNATURES, build_module

    model = make_model(
        dropout=0.0, max_sequence_length=8, source_vocabulary_size=4000, target_vocabulary_size=4000, hidden_dim=128
    )
    weight_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.variables)
    for quantization in (None, "dynamic_int8"):
        module = build_module(model, quantization=quantization)
        for name in SIGNATURES[:2]:  # generate and beam_search: each held copies of the weights in its loop
            function = getattr(module, name).get_concrete_function()
            graphs = [function.graph.as_graph_def()]
            constants = sum(
                len(node.attr["value"].tensor.tensor_content)
                for graph in graphs
                for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def]
                if node.op == "Const"
            )
            assert constants < 0.05 * weight_bytes, (quantization, name, constants, weight_bytes)
            saved = tmp_path / f"{quantization}_{name}"
            tf.saved_model.save(_only(module), str(saved), signatures={name: function})
            # The weights once, as variables (+ the int8 lookup tables); the graph itself small.
            held = sum(v.numpy().nbytes for v in module.frozen_variables())
            assert held < 1.3 * weight_bytes and _directory_bytes(saved / "variables") < 1.1 * held
            assert os.path.getsize(saved / "saved_model.pb") < 0.25 * weight_bytes, (quantization, name)
