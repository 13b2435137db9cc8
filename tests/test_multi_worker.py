"""`--distribute multi-worker`: two worker processes on 127.0.0.1, one `TF_CONFIG` cluster.

Each worker is a `train.py` process with the same flags; `TF_CONFIG` gives
it its place. The chief (worker 0) writes the run directory; worker 1
prepares the same task in a temporary directory it removes (its `TMPDIR`
here, to look inside). Text is streamed from two shards per side and the
tokenizers are SentencePiece's: each worker trains its own, checked equal.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from keras_transformer.distribution import worker_role
from keras_transformer.run_checkpoint import load_snapshot, training_status
from tests.conftest import MODEL
from tests.test_reliability import _history

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _text_flags(corpus, tmp_path):
    directory, sources, targets = corpus
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard, part in enumerate((slice(0, 500), slice(500, 1000))):
        (shards / f"train.{shard}.src").write_text("\n".join(sources[part]) + "\n")
        (shards / f"train.{shard}.tgt").write_text("\n".join(targets[part]) + "\n")
    return MODEL + [
        "--train-src", str(shards / "train.*.src"), "--train-tgt", str(shards / "train.*.tgt"),
        "--val-tsv", str(directory / "val.tsv"), "--vocab-size", "50", "--out", str(tmp_path / "runs"),
        "--name", "run", "--no-export", "--distribute", "multi-worker",
    ]  # fmt: skip


class Cluster:
    """Two `train.py` workers; `start(argv)` launches both, `wait()` their exit codes and outputs."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.scratch = tmp_path / "worker-tmp"  # worker 1's TMPDIR
        self.scratch.mkdir()
        self.processes, self.logs, self.round = [], [], 0

    def start(self, argv):
        addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
        self.processes, self.logs, self.round = [], [], self.round + 1
        for index in range(2):
            config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            if index == 1:
                env["TMPDIR"] = str(self.scratch)
            log = open(self.tmp_path / f"worker{index}-{self.round}.log", "w+")
            self.logs.append(log)
            self.processes.append(subprocess.Popen([sys.executable, "train.py"] + argv, cwd=ROOT, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT))  # fmt: skip

    def wait(self):
        deadline = time.monotonic() + TIMEOUT
        codes = [process.wait(timeout=max(deadline - time.monotonic(), 1)) for process in self.processes]
        outputs = []
        for log in self.logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
        return codes, outputs

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_two_workers_train_into_one_run_directory(corpus, tmp_path, cluster):
    # A time limit that does not run out: every step, the workers agree on whether to stop.
    cluster.start(_text_flags(corpus, tmp_path) + ["--epochs", "2", "--time-limit", "30"])
    codes, (chief, worker) = cluster.wait()
    assert codes == [0, 0], chief[-3000:] + worker[-3000:]
    assert "Worker: worker 0 of a 2-worker cluster, chief: writes the run directory" in chief
    assert "Worker: worker 1 of a 2-worker cluster, writes no run directory" in worker
    assert "MultiWorkerMirroredStrategy, 2 replicas in sync" in chief and "the chief evaluates" in worker
    # Exactly one run, complete; worker 1 left nothing behind.
    runs = tmp_path / "runs"
    assert os.listdir(runs) == ["run"] and training_status(str(runs / "run")) == "finished"
    assert [int(row["epoch"]) for row in _history(runs / "run" / "history.csv")] == [0, 1]
    assert json.loads((runs / "run" / "evaluation.json").read_text())["bleu"] >= 0
    config = json.loads((runs / "run" / "config.json").read_text())
    assert config["training"]["distribute"] == "multi-worker"
    assert os.listdir(cluster.scratch) == []


@pytest.mark.slow
@pytest.mark.reliability
def test_a_worker_killed_mid_epoch_then_both_resume(corpus, tmp_path, cluster):
    argv = _text_flags(corpus, tmp_path) + ["--epochs", "3"]
    run = tmp_path / "runs" / "run"
    cluster.start(argv)
    deadline = time.monotonic() + TIMEOUT
    while load_snapshot(str(run / "checkpoints"))[0] is None:  # the first epoch is saved
        assert time.monotonic() < deadline and all(p.poll() is None for p in cluster.processes)
        time.sleep(0.1)
    time.sleep(1.0)  # into the second epoch (30 steps of ~0.1-0.3 s)
    cluster.processes[1].send_signal(signal.SIGKILL)
    codes, (chief, _) = cluster.wait()
    assert codes[1] == -signal.SIGKILL
    # The chief finds its peer gone: one line, no traceback, the run kept for --resume.
    assert codes[0] == 2 and "start every worker again with --resume" in chief and "Traceback" not in chief
    assert training_status(str(run)) == "interrupted"
    assert [int(row["epoch"]) for row in _history(run / "history.csv")] == [0]

    cluster.start(argv + ["--resume"])
    codes, (chief, worker) = cluster.wait()
    assert codes == [0, 0], chief[-3000:] + worker[-3000:]
    # Worker 1 learns the epoch (and the weights) from the chief: its own copy was lost with it.
    assert "Resuming after epoch 1" in chief and "Resuming after epoch 1" in worker
    assert training_status(str(run)) == "finished"
    assert [int(row["epoch"]) for row in _history(run / "history.csv")] == [0, 1, 2]
    assert os.listdir(tmp_path / "runs") == ["run"]
    # What the killed worker had in its temporary directory stays (kill -9); the resumed one removed its own.
    assert len([name for name in os.listdir(cluster.scratch) if name.startswith("keras-transformer-")]) <= 1


def test_worker_role_reads_tf_config():
    cluster = {"worker": ["a:1", "b:1"]}
    assert worker_role("mirrored", {}) is None
    first = worker_role("multi-worker", {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})})
    assert first.chief and first.workers == 2
    second = worker_role("multi-worker", {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})})
    assert not second.chief and "writes no run directory" in str(second)
    with_chief = {"chief": ["c:1"], **cluster}
    assert worker_role("multi-worker", {"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})}).chief
    assert not worker_role("multi-worker", {"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})}).chief
    bad = [
        ({}, "TF_CONFIG, which is not set"),
        ({"TF_CONFIG": "{"}, "not a cluster description"),
        ({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}})}, "is not in the cluster"),
        ({"TF_CONFIG": json.dumps({"cluster": {"ps": ["p:1"], **cluster}, "task": {"type": "worker", "index": 0}})}, "not ['ps']"),
    ]  # fmt: skip
    for environ, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            worker_role("multi-worker", environ)


def test_multi_worker_flags_are_checked_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = ["--out", str(tmp_path / "runs"), "--name", "run", "--distribute", "multi-worker", "--no-export"]
    assert train.cli(argv) == 2
    assert "TF_CONFIG, which is not set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(argv + ["--cpu-devices", "2"])
    assert "--cpu-devices is for --distribute mirrored" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}))
    assert train.cli(["--out", str(tmp_path / "runs"), "--distribute", "multi-worker", "--no-export"]) == 2
    assert "needs a --name" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


WAIT_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
import tensorflow as tf
from keras_transformer.distribution import waiting_for_the_cluster, worker_role
with waiting_for_the_cluster(worker_role("multi-worker"), every=1):
    tf.distribute.MultiWorkerMirroredStrategy()
print("joined", flush=True)
"""


def test_a_worker_waiting_for_one_that_never_starts_says_so_and_stops_on_ctrl_c(tmp_path):
    """The strategy's start blocks in C++ until every worker has joined: the wait names the missing worker every
    interval, and Ctrl-C (SIGINT to the process group) ends it at once with one line."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 0}}
    env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    log = tmp_path / "worker0.err"
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-c", WAIT_SCRIPT.format(root=ROOT)], env=env,
                                   stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "Waiting for worker 1" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
            assert process.wait(timeout=20) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            process.stdout.close()
    lines = [line for line in log.read_text().splitlines() if line.startswith(("Waiting", "train.py"))]  # not TF's
    assert f"Waiting for worker 1 ({addresses[1]}) to start (" in lines[0], lines
    assert lines[-1] == "train.py: stopped by Ctrl-C while waiting for the cluster (no epoch had started).", lines
