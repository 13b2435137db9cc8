"""python -m export, export.verify, export.run_tflite; bad run directories."""

import json
import os
import shutil
import warnings

import pytest

pytestmark = pytest.mark.slow


def _copy_run(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    return copy


def test_export_cli_writes_one_format_and_refuses_unknown_ones(run, tmp_path, capsys):
    from export.__main__ import cli

    assert cli(["--model", str(run), "--format", "tflite_dynamic_int8", "--out", str(tmp_path / "out")]) == 0
    assert os.listdir(tmp_path / "out") == ["model_dynamic_int8.tflite"]
    with pytest.raises(SystemExit):
        cli(["--model", str(run), "--format", "onnx"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["model.keras", "config.json", "tokenizers/tokenizers.json"])
def test_incomplete_run_directory_fails_clearly_and_writes_nothing(run, tmp_path, missing, capsys):
    from export.__main__ import cli

    copy = _copy_run(run, tmp_path)
    os.remove(copy / missing)
    assert cli(["--model", str(copy), "--format", "tflite"]) == 2
    assert f"{missing} is missing" in capsys.readouterr().err
    assert not (copy / "export").exists()


def test_mismatched_tokenizer_fails_and_keeps_earlier_artifacts(run, tmp_path, capsys):
    from export.__main__ import cli
    from keras_transformer.data.tokenizers import WordPieceTokenizer, load_tokenizers, save_tokenizers

    copy = _copy_run(run, tmp_path)
    out = tmp_path / "out"
    assert cli(["--model", str(copy), "--format", "tflite", "--out", str(out)]) == 0
    before = (out / "model.tflite").read_bytes()
    source, _ = load_tokenizers(str(copy / "tokenizers"))
    shutil.rmtree(copy / "tokenizers")
    other = WordPieceTokenizer(source.vocabulary[:-5])  # another vocabulary
    save_tokenizers(str(copy / "tokenizers"), other, other)
    assert cli(["--model", str(copy), "--format", "tflite", "--out", str(out)]) == 2
    assert "mismatched" in capsys.readouterr().err
    assert os.listdir(out) == ["model.tflite"] and (out / "model.tflite").read_bytes() == before


def test_failed_conversion_leaves_no_partial_artifact(run, tmp_path, monkeypatch):
    import export
    from export import tflite

    out = tmp_path / "out"

    def broken(self, run, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise export.ExportError("conversion failed")

    monkeypatch.setattr(tflite.Float32Exporter, "export", broken)
    with pytest.raises(export.ExportError):
        export.export_run(str(run), ["tflite"], out=str(out))
    assert not out.exists()  # not even the folder the export made for it
    out.mkdir()
    with pytest.raises(export.ExportError):
        export.export_run(str(run), ["tflite"], out=str(out))
    assert os.listdir(out) == []  # a folder that was there stays, empty


def test_export_options_and_formats_are_checked(run):
    import export

    with pytest.raises(export.ExportError, match="Unknown export option"):
        export.export_run(str(run), ["tflite"], beam_sise=2)
    with pytest.raises(export.ExportError, match="beam-size"):
        export.ExportOptions(beam_size=0)
    with pytest.raises(export.ExportError, match="int8-rounding"):
        export.ExportOptions(int8_rounding="stochastic")
    with pytest.raises(export.ExportError, match="length-penalty-form"):
        export.ExportOptions(length_penalty_form="average")
    with pytest.raises(export.ExportError, match="unknown format"):
        export.formats_for("translate", "tflite,onnx")
    assert export.formats_for("translate", "default") == [
        "saved_model", "tflite", "tflite_float16", "tflite_dynamic_int8", "tflite_text"
    ]  # fmt: skip
    assert "tflite_int8" not in export.formats_for("lm", "all")


def test_verify_prints_a_table_and_writes_json(run, int8_path, tmp_path, capsys):
    from export import verify

    path = tmp_path / "verify.json"
    rows = verify.main(["--model", str(run), "--limit", "24", "--latency-sentences", "3", "--json", str(path)])
    table = capsys.readouterr().out
    names = [row["artifact"] for row in rows]
    assert names == [
        "keras", "saved_model", "tflite", "tflite_float16", "tflite_dynamic_int8", "tflite_int8", "tflite_text"
    ]  # fmt: skip
    for row in rows[:3]:  # float32 artifacts: the same tokens
        assert row["token_agreement"] == 1.0 and row["max_logit_difference"] < 1e-3 and row["step_agreement"] == 1.0
    # Given the same prefixes, quantized variants rarely change the next-token decision, and never
    # more often than free-running greedy decoding (where one change also changes what follows).
    assert rows[4]["step_agreement"] >= max(0.9, rows[4]["token_agreement"] - 0.05)
    assert all(row["bleu"] > 50 and row["ms_per_sentence"] > 0 for row in rows)
    # The text variant is compared on text: the same translations as Keras, so the same BLEU.
    assert rows[6]["sentences_equal"] == 1.0 and rows[6]["bleu"] == rows[0]["bleu"]
    assert "tflite_dynamic_int8" in table and "| artifact" in table
    assert json.loads(path.read_text())["results"] == rows


def test_run_tflite_translates_like_the_keras_model(run, corpus, exported, capsys):
    from export import run_tflite
    from keras_transformer.translator import Translator

    _, sentences, _ = corpus
    texts = sentences[1000:1005] + [""]
    expected = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer, beam_size=1).translate(texts)
    run_tflite.main(["--model", str(run), *texts])
    assert capsys.readouterr().out.split("\n")[:-1] == expected
    run_tflite.main(["--model", str(run), "--tflite", str(run / "export" / "model_text.tflite"), *texts])
    assert capsys.readouterr().out.split("\n")[:-1] == expected


def test_train_refuses_unknown_export_formats_before_training(tmp_path):
    import train

    with pytest.raises(ValueError, match="--export"):
        train.main(["--export", "onnx", "--out", str(tmp_path)])
    assert not os.listdir(tmp_path)


def test_int8_calibrates_on_the_run_s_saved_sentences_or_asks_for_data(run, tmp_path):
    import export

    # Written by train.py, not re-derived: every training sentence of the test corpus (1,000, fewer than 3,000).
    assert len(export.Run(str(run)).calibration_sentences()) == 1000
    copy = _copy_run(run, tmp_path)
    os.remove(copy / "calibration.txt")
    with pytest.raises(export.ExportError, match="--data"):
        export.export_run(str(copy), ["tflite_int8"], out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    # Dynamic int8 with GPTQ rounding reads the calibration sentences: other int8 values than the default
    # export's (rounded to nearest), the same size.
    gptq = export.export_run(str(run), ["tflite_dynamic_int8"], out=str(tmp_path / "gptq"), log=None, int8_rounding="gptq")
    nearest = (run / "export" / "model_dynamic_int8.tflite").read_bytes()
    with open(gptq["tflite_dynamic_int8"], "rb") as f:
        rounded = f.read()
    assert rounded != nearest and abs(len(rounded) - len(nearest)) < 0.01 * len(nearest)
    # Without sentences its weights are rounded to nearest, as it says.
    with warnings.catch_warnings(record=True) as caught:  # pytest.warns would re-raise TensorFlow's own warnings
        warnings.simplefilter("always", UserWarning)
        written = export.export_run(
            str(copy), ["tflite_dynamic_int8"], out=str(tmp_path / "out"), log=None, int8_rounding="gptq"
        )
    assert any("rounded to nearest" in str(w.message) for w in caught), [str(w.message) for w in caught]
    with open(written["tflite_dynamic_int8"], "rb") as f:
        assert f.read() == nearest


def test_export_never_deletes_what_it_did_not_write_and_reads_bad_files_clearly(run, tmp_path, capsys):
    import export
    from export import run_tflite, verify
    from export.__main__ import cli

    assert not (run / "export" / ".kt-lock").exists()  # a finished export leaves no lock behind
    out = tmp_path / "out"
    (out / "model.tflite").mkdir(parents=True)
    (out / "model.tflite" / "mine.txt").write_text("keep me")
    with pytest.raises(export.ExportError, match="not an earlier tflite artifact"):
        export.export_run(str(run), ["tflite"], out=str(out))
    assert (out / "model.tflite" / "mine.txt").read_text() == "keep me"
    (tmp_path / "a_file").write_text("")
    assert cli(["--model", str(run), "--format", "tflite", "--out", str(tmp_path / "a_file")]) == 2
    assert "is a file" in capsys.readouterr().err
    if os.path.isdir("/proc/self"):  # a file system where nothing can be created
        assert cli(["--model", str(run), "--format", "tflite", "--out", "/proc/keras-transformer-export"]) == 2
        assert "cannot export into /proc/keras-transformer-export (--out)" in capsys.readouterr().err

    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((run / "export" / "model.tflite").read_bytes()[:5000])
    with pytest.raises(SystemExit):
        run_tflite.main(["--model", str(run), "--tflite", str(truncated), "A sentence."])
    assert "not a readable TFLite model" in capsys.readouterr().err
    copy = _copy_run(run, tmp_path)
    (copy / "model.keras").write_bytes(b"corrupt")
    assert verify.cli(["--model", str(copy)]) == 2
    assert "not a .keras archive (truncated or corrupt?)" in capsys.readouterr().err
