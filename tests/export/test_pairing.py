"""An exported file says which run it came from; a run paired with another run's file is refused in one line."""

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def exported_tflite(trained_run, tmp_path_factory):
    """The quick tests' run exported as float32 TFLite only, outside the run directory."""
    import export

    out = tmp_path_factory.mktemp("pairing-out")
    return export.export_run(str(trained_run), ["tflite"], out=str(out), log=None)["tflite"]


def _run_with_target_vocabulary(trained_run, tmp_path, change):
    """A copy of the run whose target vocabulary is `change(pieces)`."""
    copy = tmp_path / "other"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("export", "checkpoints", "logs"))
    vocabulary = (copy / "tokenizers" / "target.vocab").read_text(encoding="utf-8").split("\n")[:-1]
    (copy / "tokenizers" / "target.vocab").write_text("\n".join(change(vocabulary)) + "\n", encoding="utf-8")
    return copy


def test_a_tflite_file_records_its_run(trained_run, exported_tflite):
    from export import Run, pairing

    found = pairing.read_record(exported_tflite)
    assert found == json.loads(pairing.encoded(Run(str(trained_run))))
    assert found["family"] == "translate" and found["tokenizers"]["target"]["kind"] == "wordpiece"
    assert len(found["model_sha256"]) == 64


def test_another_run_s_tflite_is_refused_by_run_tflite_and_verify(trained_run, exported_tflite, tmp_path, capsys):
    from export import run_tflite, verify

    run_tflite.main(["--model", str(trained_run), "--tflite", exported_tflite, "Fodoto meso."])  # its own run: fine
    assert capsys.readouterr().out.strip()

    swapped = _run_with_target_vocabulary(trained_run, tmp_path, lambda v: v[:4] + v[5:] + v[4:5])  # same size
    with pytest.raises(SystemExit):
        run_tflite.main(["--model", str(swapped), "--tflite", exported_tflite, "Fodoto meso."])
    err = capsys.readouterr().err
    assert "was exported from a run with another target vocabulary (wordpiece, " in err, err
    assert "pass the run it was exported from (--model)" in err and "Traceback" not in err
    export_dir = shutil.copytree(exported_tflite.rsplit("/", 1)[0], tmp_path / "export")
    assert verify.cli(["--model", str(swapped), "--export-dir", str(export_dir), "--limit", "4"]) == 2
    assert "another target vocabulary" in capsys.readouterr().err


def test_a_file_without_a_record_is_caught_by_its_ids(trained_run, exported_tflite, tmp_path, capsys):
    """Files exported before records were written: an id past the run's vocabulary is one line, not a traceback."""
    from tensorflow.lite.tools import flatbuffer_utils

    from export import pairing, run_tflite

    with open(exported_tflite, "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    model.metadata = [entry for entry in model.metadata if entry.name != pairing.METADATA_NAME.encode()]
    old = tmp_path / "old.tflite"
    old.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert pairing.read_record(str(old)) is None

    small = _run_with_target_vocabulary(trained_run, tmp_path, lambda v: v[:5])
    with pytest.raises(SystemExit):
        run_tflite.main(["--model", str(small), "--tflite", str(old), "Fodoto meso."])
    err = capsys.readouterr().err
    assert "past " in err and "target vocabulary (5 pieces): it was exported from another run" in err, err
