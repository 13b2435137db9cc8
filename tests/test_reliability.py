"""Training survives `kill -9` at any instant: resume, then every file loads and tells one story."""

import csv
import os
import subprocess
import sys
import textwrap

import keras
import pytest

import keras_transformer as kt
import train
from keras_transformer.run_checkpoint import training_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = [
    "--train-examples", "256", "--val-examples", "64", "--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2",
    "--intermediate-dim", "32", "--batch-size", "64", "--verbose", "0", "--no-export", "--epochs", "3",
]  # fmt: skip
# A kill just before the n-th atomic rename of the run (0: the tokenizers, 1: config.json, then per epoch:
# model.keras, history.csv, the snapshot, its pointer; last: calibration.txt, evaluation.json): the
# temporary file is complete or half-written, the rename never happens, nothing is cleaned up.
KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    calls, real = [0], os.replace
    def replace(source, target):
        if calls[0] == {n}:
            os._exit(9)
        calls[0] += 1
        return real(source, target)
    os.replace = replace
    import train
    train.main({argv!r})
    """
)


def _history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.reliability
@pytest.mark.parametrize(
    "n", [2, 7] + [pytest.param(n, marks=pytest.mark.slow) for n in (0, 5, 12, 15)]
)  # the quick suite: before the first epoch ends, and in the middle of the run; the slow group: the rest
def test_a_run_killed_at_any_rename_resumes_to_a_consistent_directory(n, tmp_path):
    argv = FLAGS + ["--out", str(tmp_path), "--name", "run"]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=ROOT, n=n, argv=argv)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == 9, killed.stderr[-2000:]
    run = tmp_path / "run"
    status = training_status(str(run))
    assert status in ("started", "interrupted")
    # A plain rerun of a run with an epoch to resume from is refused; resuming continues it.
    if status == "interrupted":
        assert train.cli(argv) == 2
    results = train.main(argv + ["--resume"])
    assert training_status(str(run)) == "finished"
    assert not [name for name in os.listdir(run) if name.startswith(".tmp-")] and not os.path.exists(run / "checkpoints")
    rows = _history(run / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    # The saved model is the best epoch in the history.
    model = keras.saving.load_model(run / "model.keras")
    val_x, val_y = kt.data.SyntheticTranslationTask().dataset(64, seed=2)
    val_loss = model.evaluate(val_x, val_y, batch_size=64, verbose=0)[0]
    assert val_loss == pytest.approx(min(float(row["val_loss"]) for row in rows), rel=1e-3)
    assert results["train_seconds"] > 0


@pytest.mark.reliability
def test_resume_needs_a_run_and_names_stay_inside_out(tmp_path):
    assert train.cli(FLAGS + ["--out", str(tmp_path), "--name", "nothing", "--resume"]) == 2
    assert train.cli(FLAGS + ["--out", str(tmp_path), "--name", "../escaped"]) == 2
    assert train.cli(FLAGS + ["--out", str(tmp_path), "--name", "/abs/path"]) == 2
    (tmp_path / "file").write_text("")
    assert train.cli(FLAGS + ["--out", str(tmp_path / "file"), "--name", "x"]) == 2
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.reliability
def test_bad_data_found_while_preparing_leaves_no_run_directory(tmp_path):
    bad = tmp_path / "train.en"
    bad.write_bytes("one\ntwo\n".encode("utf-16"))
    (tmp_path / "train.de").write_text("eins\nzwei\n")
    argv = FLAGS + ["--out", str(tmp_path / "runs"), "--name", "run", "--train-src", str(bad),
                    "--train-tgt", str(tmp_path / "train.de"), "--val-tsv", str(tmp_path / "train.de")]  # fmt: skip
    assert train.cli(argv) == 2
    assert os.listdir(tmp_path / "runs") == []
    # A directory the user made (or a killed run's) is never removed.
    (tmp_path / "runs" / "run").mkdir()
    (tmp_path / "runs" / "run" / "notes.txt").write_text("mine")
    assert train.cli(argv) == 2
    assert os.listdir(tmp_path / "runs" / "run") == ["notes.txt"]


@pytest.mark.reliability
@pytest.mark.slow
def test_a_mirrored_run_killed_mid_training_resumes_under_the_strategy(tmp_path):
    """`--distribute mirrored` over 2 logical CPUs: killed after the first epoch's snapshot, then `--resume`."""
    argv = FLAGS + ["--out", str(tmp_path), "--name", "run", "--distribute", "mirrored", "--cpu-devices", "2"]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=ROOT, n=6, argv=argv)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == 9, killed.stderr[-2000:]
    run = tmp_path / "run"
    assert training_status(str(run)) == "interrupted"
    resumed = subprocess.run([sys.executable, "train.py"] + argv + ["--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch 1" in resumed.stdout and "MirroredStrategy over 2 devices" in resumed.stdout
    assert training_status(str(run)) == "finished"
    assert [int(row["epoch"]) for row in _history(run / "history.csv")] == [0, 1, 2]


@pytest.mark.reliability
def test_a_second_process_on_the_same_run_is_refused_naming_the_first(tmp_path, capsys):
    """Two train.py on one --out/--name: the second is refused with one line, writes nothing; a dead holder's
    lock is taken over; a finished run leaves no lock behind."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {ROOT!r}); "
         "from keras_transformer.run_directory import RunLock; "
         f"RunLock({str(tmp_path / 'run')!r}).acquire(); print('held', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = FLAGS + ["--epochs", "1", "--out", str(tmp_path), "--name", "run"]
        assert train.cli(argv) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {holder.pid} on " in err and "choose another --name" in err, err
        assert not (tmp_path / "run").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert train.cli(argv) == 0  # the holder was killed: its lock is taken over
    assert training_status(str(tmp_path / "run")) == "finished"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the lock went with the process that held it


@pytest.mark.reliability
def test_a_second_export_into_the_same_out_is_refused_and_deletes_nothing(trained_run, tmp_path, capsys):
    """An export target has one writer: a second `python -m export` there is refused with one line naming
    the first, and touches nothing of it (a user's `.tmp-*` files, the first export's temporaries)."""
    from export.__main__ import cli
    from keras_transformer.run_directory import temporary_prefix

    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-notes.txt").write_text("mine")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import os, sys, time; sys.path.insert(0, {ROOT!r}); "
         "from keras_transformer.run_directory import RunLock, temporary_prefix; "
         f"RunLock({str(out)!r}, {str(out / '.kt-lock')!r}).acquire(); "
         f"os.mkdir(os.path.join({str(out)!r}, temporary_prefix() + 'being-written')); "
         "print(temporary_prefix(), flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        theirs = holder.stdout.readline().strip() + "being-written"
        assert cli(["--model", str(trained_run), "--format", "tflite", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {holder.pid} on " in err and "export elsewhere (--out)" in err, err
        assert len(err.strip().splitlines()) == 1
        assert sorted(os.listdir(out)) == sorted([".kt-lock", ".tmp-notes.txt", theirs])
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not theirs.startswith(temporary_prefix())
