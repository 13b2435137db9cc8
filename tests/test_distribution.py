"""Data parallelism on two devices equals one device fed the same global batches.

Each check runs in a fresh process (`tests/distributed_check.py`): logical
devices must be set before TensorFlow or JAX starts. The two halves of every
batch hold different numbers of real tokens, so the check also holds the loss
to a mean over the global batch's tokens (without that, weights differ by 0.8).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5  # largest weight difference after 8 updates (measured: 4.8e-7 TensorFlow, 7.6e-7 JAX)


def _run(command, backend, devices=2):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "jax":
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("backend, strategy", [("tensorflow", "MirroredStrategy"), ("jax", "DataParallel")])
def test_two_devices_update_like_one(backend, strategy):
    result = _run([sys.executable, "tests/distributed_check.py"], backend)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert strategy in report["strategy"] and "2 devices" in report["strategy"]
    assert report["moved"] > 0.1
    assert report["max_weight_difference"] < TOLERANCE
    for one, two in zip(report["loss_one_device"], report["loss_two_devices"]):
        assert one == pytest.approx(two, rel=1e-5)


def test_every_family_fits_under_mirrored_strategy_from_python():
    """A user's own `compile` and `fit` under `MirroredStrategy`: ids stay integers, updates equal one device's."""
    result = _run([sys.executable, "tests/distributed_check.py", "families"], "tensorflow")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(report) == ["classify", "lm", "tag", "translate"]
    for family, figures in report.items():
        assert figures["moved"] > 0.01, family
        assert figures["max_weight_difference"] < TOLERANCE, (family, figures)
        for one, two in zip(figures["loss_one_device"], figures["loss_two_devices"]):
            assert one == pytest.approx(two, rel=1e-5), family


@pytest.mark.slow
def test_train_py_distribute_mirrored_on_text(corpus, tmp_path):
    directory, _, _ = corpus
    result = _run(
        [sys.executable, "train.py"] + MODEL + [
            "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
            "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "wordpiece", "--vocab-size", "120",
            "--epochs", "2", "--distribute", "mirrored", "--cpu-devices", "2", "--out", str(tmp_path),
            "--name", "run", "--no-export", "--verbose", "2",
        ],
        "tensorflow",
    )  # fmt: skip
    assert "Devices: tf.distribute.MirroredStrategy over 2 devices" in result.stdout
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["distribute"] == "mirrored" and config["training"]["cpu_devices"] == 2
    assert (run / "model.keras").exists() and json.loads((run / "evaluation.json").read_text())["bleu"] >= 0


@pytest.mark.slow
def test_train_py_distribute_on_jax_with_batches_the_devices_do_not_divide(tmp_path):
    """2001 sentences in batches of 64: the last batch (17 rows) is cut to 16 for JAX's two shards."""
    result = _run(
        [sys.executable, "train.py", "--distribute", "mirrored", "--cpu-devices", "2", "--epochs", "1",
         "--train-examples", "2001", "--val-examples", "101", "--num-layers", "1", "--hidden-dim", "16",
         "--num-heads", "2", "--intermediate-dim", "32", "--out", str(tmp_path), "--name", "run", "--no-export",
         "--no-tensorboard", "--verbose", "2"],
        "jax",
    )  # fmt: skip
    assert "keras.distribution.DataParallel over 2 devices" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backend"] == "jax"
    assert (tmp_path / "run" / "model.keras").exists()
