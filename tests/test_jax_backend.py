"""`train.py` and the GPU benchmark on Keras's JAX backend (run on the CPU here).

Each runs in a child process with `KERAS_BACKEND=jax`: this process has
TensorFlow's backend loaded.
"""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_TENSORFLOW = """
import runpy, sys
class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_text", "tf_keras"):
            raise ImportError("TensorFlow is not available in this process: " + name)
sys.meta_path.insert(0, BlockTensorFlow())
sys.path.insert(0, {benchmarks!r})
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(command, **kwargs):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_train_py_on_jax_feeds_tf_data_and_exports_with_tensorflow(corpus, tmp_path):
    """Text read and tokenized by tf.data, trained by JAX; the TensorFlow export matches the model."""
    directory, _, _ = corpus
    _run(
        [sys.executable, "train.py"] + MODEL + [
            "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
            "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "wordpiece", "--vocab-size", "200",
            "--epochs", "3", "--out", str(tmp_path), "--name", "jax", "--export", "saved_model",
        ]
    )  # fmt: skip
    run = tmp_path / "jax"
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "jax"
    with open(run / "history.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 3 and losses[-1] < losses[0]

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer ops of the SavedModel)

    model = keras.saving.load_model(run / "model.keras")  # trained on JAX, loaded on TensorFlow
    ids = np.array([[5, 6, 7, 8, 2, 0], [9, 10, 2, 0, 0, 0]], "int32")
    exported = tf.saved_model.load(str(run / "export" / "saved_model" / "1"))
    tokens = exported.signatures["generate"](encoder_token_ids=tf.constant(ids))["token_ids"].numpy()
    expected = np.asarray(model.generate(ids))
    np.testing.assert_array_equal(tokens[:, : expected.shape[1]], expected)


@pytest.mark.slow
def test_gpu_benchmark_runs_on_jax_alone():
    """benchmarks/gpu.py imports no TensorFlow (the GPU machine has none); here a tiny CPU run."""
    argv = [
        "benchmarks/gpu.py", "--presets", "tiny", "--batch-size", "4", "--length", "12", "--vocabulary-size", "200",
        "--steps", "2", "--repeats", "1", "--matmul-size", "64", "--generate-preset", "tiny",
        "--generate-length", "4", "--generate-repeats", "1",
    ]  # fmt: skip
    code = BLOCK_TENSORFLOW.format(benchmarks=os.path.join(ROOT, "benchmarks"), argv=argv)
    result = _run([sys.executable, "-c", code])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    kinds = [(row["measurement"], row.get("model") or row.get("method")) for row in rows]
    assert kinds == [
        ("device", None), ("gpu_train", "ours"), ("gpu_train", "keras_hub"), ("gpu_train_ratio", None),
        ("gpu_generate", "greedy"), ("gpu_generate", "greedy"), ("gpu_generate", "beam4"),
    ]  # fmt: skip
    assert all(row["attention_fallbacks"] == 0 for row in rows if "attention_fallbacks" in row)
    assert all(row["target_tokens_per_second"] > 0 for row in rows if row["measurement"] == "gpu_train")
