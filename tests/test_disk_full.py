"""A full file system: one line, the files already written intact, no temporary left, and the work goes on once
there is space. Each case mounts a small tmpfs in a user and mount namespace of its own (`unshare`), so nothing
of the machine's is touched; where namespaces are not allowed, the tests say so and skip."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [
    sys.executable, "train.py", "--train-examples", "256", "--val-examples", "64", "--num-layers", "1",
    "--hidden-dim", "16", "--num-heads", "2", "--intermediate-dim", "32", "--batch-size", "64", "--verbose", "0",
    "--epochs", "3", "--no-tensorboard",
]  # fmt: skip
# The tiny run's files: tokenizers and config.json ~20 kB, model.keras ~390 kB, the epoch snapshot ~410 kB.
ONE_EPOCH_FITS = "1100k"  # epoch 1 is written (~830 kB), epoch 2's model.keras is not
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces_allowed():
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(UNSHARE + ["sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_allowed(), reason="needs `unshare` with user and mount namespaces to mount a small tmpfs"
)


def _in_small_file_system(size, mount, steps):
    """Run `steps` (shell lines, `$D` the mount point) with a tmpfs of `size` mounted at `mount`; their output."""
    script = "\n".join([f"D={mount}", "mount -t tmpfs -o size=$SIZE tmpfs $D || exit 99", f"cd {ROOT}", *steps])
    result = subprocess.run(
        UNSHARE + ["bash", "-c", script], env=dict(os.environ, SIZE=size), capture_output=True, text=True, timeout=900
    )
    assert "exit 99" not in result.stderr, result.stderr
    return result.stdout


def _temporaries(directory):
    return [os.path.join(d, name) for d, names, files in os.walk(directory) for name in names + files
            if name.startswith(".tmp") or name.startswith(".kt-lock")]  # fmt: skip


def _command(argv):
    return " ".join(f"'{part}'" for part in argv)


def test_training_into_a_full_disk_stops_in_one_line_and_resumes_once_there_is_space(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    copy = tmp_path / "copy"
    run = _command(TRAIN + ["--no-export", "--out", "$D", "--name", "run"]).replace("'$D'", "$D")
    output = _in_small_file_system(ONE_EPOCH_FITS, mount, [
        f"{run} 2> $D.err1; echo rc1=$?",
        "cat $D.err1",
        "cp -r $D/run $D.after-failure",
        "mount -o remount,size=50m $D",  # space again
        f"{run} --resume 2> $D.err2; echo rc2=$?",
        "cat $D.err2",
        f"cp -r $D/run {copy}",
    ])  # fmt: skip
    assert "rc1=2" in output, output
    lines = [line for line in (tmp_path / "small.err1").read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("train.py: error: no space left on the device holding ") and "--resume" in lines[0]
    failed = tmp_path / "small.after-failure"
    assert _temporaries(failed) == []
    assert (failed / "history.csv").read_text().count("\n") == 2  # the header and epoch 1, whole
    import keras

    import keras_transformer  # noqa: F401  (registers the model classes)

    keras.saving.load_model(failed / "model.keras", compile=False)  # the last good model loads
    assert "rc2=0" in output, output + (tmp_path / "small.err2").read_text()
    from keras_transformer.run_checkpoint import training_status

    assert training_status(str(copy)) == "finished" and _temporaries(copy) == []
    assert [line.split(",")[0] for line in (copy / "history.csv").read_text().splitlines()[1:]] == ["0", "1", "2"]


@pytest.mark.slow
def test_a_full_disk_before_the_first_epoch_leaves_the_name_free(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    run = _command(TRAIN + ["--no-export", "--out", "$D", "--name", "run"]).replace("'$D'", "$D")
    output = _in_small_file_system("300k", mount, [f"{run} 2> $D.err; echo rc=$?", "ls -a $D"])
    assert "rc=2" in output, output
    lines = [line for line in (tmp_path / "small.err").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "then run the same command again (no epoch had finished)" in lines[0], lines
    assert output.split("rc=2")[1].split() == [".", ".."]  # no run directory, no temporary, no lock


@pytest.mark.slow
def test_exporting_into_a_full_disk_keeps_earlier_artifacts_and_the_run(tmp_path):
    trained = tmp_path / "runs"
    subprocess.run(TRAIN + ["--no-export", "--epochs", "1", "--out", str(trained), "--name", "run"], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    export_dir = trained / "run" / "export"
    export_dir.mkdir()
    (export_dir / "model_float16.tflite").write_bytes(b"an earlier artifact")
    mount = tmp_path / "small"
    mount.mkdir()
    export = f"{sys.executable} -m export --model $D/run --format tflite --format saved_model"
    output = _in_small_file_system("1500k", mount, [
        f"cp -r {trained / 'run'} $D/run",
        f"{export} 2> $D.err; echo rc=$?",
        f"cp -r $D/run {tmp_path / 'after'}",
    ])  # fmt: skip
    assert "rc=2" in output, output
    lines = [line for line in (tmp_path / "small.err").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and "no space left on the device holding " in lines[0], lines
    assert "then export saved_model again (tflite written, earlier files unchanged)" in lines[0], lines
    after = tmp_path / "after"
    assert (after / "export" / "model_float16.tflite").read_bytes() == b"an earlier artifact"
    assert (after / "export" / "model.tflite").stat().st_size > 1000 and not (after / "export" / "saved_model").exists()
    assert _temporaries(after) == []
    assert (after / "model.keras").read_bytes() == (trained / "run" / "model.keras").read_bytes()
