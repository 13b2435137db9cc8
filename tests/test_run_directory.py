"""`RunDirectory`: atomic writes, the one check of a finished run, calibration sentences."""

import json
import os

import pytest

import keras_transformer as kt
from keras_transformer.data.tokenizers import WordPieceTokenizer
from keras_transformer.run_directory import RunDirectory, RunDirectoryError, atomic_path, atomic_write, write_text

VOCABULARY = list(kt.RESERVED_TOKENS) + ["a", "b", "c", "d"]


def test_atomic_write_replaces_whole_files_and_keeps_the_old_one_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "first")

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), failing)
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["out.txt"]
    write_text(path, "second")
    assert path.read_text() == "second" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_replaces_a_directory(tmp_path):
    target = tmp_path / "export" / "saved_model"
    for content in ("one", "two"):
        with atomic_path(str(target)) as tmp:
            os.makedirs(tmp)
            with open(os.path.join(tmp, "file"), "w") as f:
                f.write(content)
    assert (target / "file").read_text() == "two" and os.listdir(tmp_path / "export") == ["saved_model"]


def _finished_run(path, max_length=8):
    run = RunDirectory(path, create=True)
    model = kt.Transformer(len(VOCABULARY), len(VOCABULARY), num_layers=1, hidden_dim=8, num_heads=2,
                           intermediate_dim=8, max_sequence_length=max_length)  # fmt: skip
    run.save_model(model)
    run.write_json(run.config_file, {"model": model.get_config(), "task": {"family": "translate"}})
    tokenizer = WordPieceTokenizer(VOCABULARY)
    run.save_tokenizers(tokenizer, tokenizer)
    return run


def test_load_checks_files_and_that_they_describe_one_model(tmp_path):
    run = _finished_run(tmp_path / "run")
    loaded = run.load()
    assert loaded.family == "translate" and loaded.max_sequence_length == 8
    assert loaded.source_tokenizer.vocabulary_size == len(VOCABULARY)
    with pytest.raises(FileExistsError):
        RunDirectory(tmp_path / "run", create=True)

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["model"]["max_sequence_length"] = 9
    run.write_json(run.config_file, config)
    with pytest.raises(RunDirectoryError, match="max_sequence_length"):
        run.load()

    other = _finished_run(tmp_path / "other")
    other.save_tokenizers(WordPieceTokenizer(VOCABULARY[:-1]))
    with pytest.raises(RunDirectoryError, match="mismatched"):
        other.load()
    (tmp_path / "other" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(RunDirectoryError, match="not a .keras archive"):
        other.load()
    os.remove(tmp_path / "other" / "config.json")
    with pytest.raises(RunDirectoryError, match="config.json is missing"):
        other.load()


def test_calibration_sentences_round_trip(tmp_path):
    run = RunDirectory(tmp_path / "run", create=True)
    assert run.read_calibration() is None
    run.write_calibration(["A  man\tsleeps.", "", "Zwei Hunde."])
    assert run.read_calibration() == ["A man sleeps.", "Zwei Hunde."]


def _copy_of(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tensorboard", "export", "checkpoints"))
    return copy


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../../../../etc/passwd", "..", "sub/source.vocab", "", None, "link"]
)
def test_a_tokenizer_file_outside_the_run_is_never_read(trained_run, tmp_path, capsys, name):
    """tokenizers.json naming a path, a parent or a link out of the run: one run-directory error, nothing read."""
    from keras_transformer import translate

    run = _copy_of(trained_run, tmp_path)
    tokenizers = run / "tokenizers"
    metadata = json.loads((tokenizers / "tokenizers.json").read_text())
    if name == "link":
        (tokenizers / metadata["source"]["file"]).unlink()
        os.symlink("/etc/passwd", tokenizers / metadata["source"]["file"])
    else:
        metadata["source"]["file"] = name
    (tokenizers / "tokenizers.json").write_text(json.dumps(metadata))
    with pytest.raises(RunDirectoryError, match="nothing outside the run is read"):
        RunDirectory(run).load()
    with pytest.raises(ValueError, match="nothing outside the run is read"):
        kt.Translator.from_run(str(run))
    assert translate.main(["--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("translate: error:") and "nothing outside the run is read" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_a_corrupt_tokenizer_model_is_a_run_directory_error_naming_it(tmp_path, kind):
    from keras_transformer.data.tokenizers import SentencePieceTokenizer, load_tokenizers, save_tokenizers

    lines = ["the cat sat on the mat", "a dog ran in the park"] * 50
    tokenizer = WordPieceTokenizer(VOCABULARY) if kind == "wordpiece" else SentencePieceTokenizer.train(lines, 20)
    directory = tmp_path / "tokenizers"
    save_tokenizers(str(directory), tokenizer, tokenizer)
    assert load_tokenizers(str(directory))[0].vocabulary_size == tokenizer.vocabulary_size
    (filename,) = [name for name in os.listdir(directory) if name != "tokenizers.json"]
    for damage in (b"\x00\xff garbage \xfe" * 20, (directory / filename).read_bytes()[:25]):
        (directory / filename).write_bytes(damage)
        if kind == "wordpiece" and damage[:1] != b"\x00":
            continue  # a truncated vocabulary is still a vocabulary; the model check catches its size
        with pytest.raises(ValueError, match=f"{filename} is not a valid {kind} model"):
            load_tokenizers(str(directory))


def test_temporaries_say_whose_they_are_and_only_dead_owners_lose_them(tmp_path):
    """A user's .tmp-* files and a live process's temporaries stay; a killed process's leftovers go."""
    import subprocess
    import sys

    from keras_transformer.run_directory import remove_temporaries, temporary_prefix

    mine = temporary_prefix() + "abc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = temporary_prefix().split("-")[2]
    gone = f".tmp-kt-{host}-{int(dead.stdout)}-xyz"
    elsewhere = f".tmp-kt-otherhost-{int(dead.stdout)}-xyz"
    for name in (".tmp-notes.txt", ".tmp-project", mine, gone, elsewhere):
        (tmp_path / name).mkdir() if "project" in name or name == gone else (tmp_path / name).write_text("x")
    (tmp_path / gone / "half.keras").write_text("half")
    remove_temporaries(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted([".tmp-notes.txt", ".tmp-project", mine, elsewhere])
    # atomic_path's temporary is named for its owner while it is being written.
    with atomic_path(str(tmp_path / "model.keras")) as tmp:
        assert os.path.basename(os.path.dirname(tmp)).startswith(temporary_prefix())
        with open(tmp, "w") as f:
            f.write("done")
    assert (tmp_path / "model.keras").read_text() == "done"


def test_a_calibration_file_that_is_not_text_is_a_run_directory_error_naming_it(tmp_path):
    run = RunDirectory(tmp_path / "run", create=True)
    assert run.read_calibration() is None
    run.write_calibration(["Ein Satz.", "Zwei."])
    assert run.read_calibration() == ["Ein Satz.", "Zwei."]
    (tmp_path / "run" / run.calibration_file).write_bytes(b"\x00\xff\xfe not text\n")
    with pytest.raises(RunDirectoryError, match=r"calibration\.txt is corrupt \(not UTF-8 text.*--data FILE"):
        run.read_calibration()


def test_a_snapshot_pointer_never_leads_outside_the_checkpoints_folder(tmp_path):
    from keras_transformer.run_checkpoint import load_snapshot

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "state.json").write_text(json.dumps({"epoch": 9}))
    (outside / "model.weights.h5").write_bytes(b"not ours")
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for pointer in ("../../outside", str(outside), "epoch-0001/../../../outside"):
        (checkpoints / "latest.json").write_text(json.dumps({"snapshot": pointer}))
        assert load_snapshot(str(checkpoints)) == (None, None)
    (checkpoints / "epoch-0002").mkdir()
    (checkpoints / "epoch-0002" / "state.json").write_text(json.dumps({"epoch": 2}))
    (checkpoints / "epoch-0002" / "model.weights.h5").write_bytes(b"weights")
    state, weights = load_snapshot(str(checkpoints))  # the bad pointer is passed over for the folder that is there
    assert state == {"epoch": 2} and weights == str(checkpoints / "epoch-0002" / "model.weights.h5")
