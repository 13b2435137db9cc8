import csv
import json
import os

import keras
import numpy as np
import pytest

import keras_transformer as kt
import train

SMALL = [
    "--train-examples", "256", "--val-examples", "64", "--num-layers", "1", "--hidden-dim", "16",
    "--num-heads", "2", "--intermediate-dim", "32", "--batch-size", "64", "--verbose", "0", "--no-export",
]  # fmt: skip


def _history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(tmp_path):
    results = train.main(SMALL + ["--epochs", "1", "--out", str(tmp_path), "--name", "run"])
    run = tmp_path / "run"
    assert {"config.json", "model.keras", "history.csv", "evaluation.json"} <= set(os.listdir(run))
    assert not [name for name in os.listdir(run) if name.startswith(".tmp-")]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden_dim"] == 16 and config["task"]["name"] == "synthetic"
    assert len(config["task"]["target_vocabulary"]) == config["model"]["target_vocabulary_size"]
    assert json.loads((run / "evaluation.json").read_text())["token_accuracy"] == results["token_accuracy"]
    model = keras.saving.load_model(run / "model.keras")
    assert isinstance(model, kt.Transformer) and model.get_config()["hidden_dim"] == 16
    assert len(_history(run / "history.csv")) == 1

    # A second run with the same name is refused and the first run is untouched.
    before = (run / "model.keras").read_bytes()
    assert train.cli(SMALL + ["--epochs", "1", "--out", str(tmp_path), "--name", "run"]) == 2
    assert (run / "model.keras").read_bytes() == before
    # A finished run has nothing to resume.
    assert train.cli(SMALL + ["--epochs", "2", "--out", str(tmp_path), "--name", "run", "--resume"]) == 2


def _crash_after_epoch(crash_epoch, argv, monkeypatch):
    """Run `train.main(argv)` with an exception raised at the end of epoch `crash_epoch` (0-based)."""

    class Crash(Exception):
        pass

    class CrashAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == crash_epoch:
                raise Crash()

    original_fit = kt.Transformer.fit

    def crashing_fit(self, *args, callbacks=(), **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, CrashAtEpochEnd()], **kwargs)

    monkeypatch.setattr(kt.Transformer, "fit", crashing_fit)
    with pytest.raises(Crash):
        train.main(argv)
    monkeypatch.setattr(kt.Transformer, "fit", original_fit)


@pytest.mark.slow
# The simulated crash skips CSVLogger's on_train_end, so its file is closed
# by the garbage collector (a real crash ends the process instead).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch, capsys):
    _crash_after_epoch(0, SMALL + ["--epochs", "3", "--out", str(tmp_path), "--name", "run"], monkeypatch)
    run = tmp_path / "run"
    assert os.path.isdir(run / "checkpoints") and len(_history(run / "history.csv")) == 1

    # A snapshot damaged after it was written is one line naming it; the run is left as it was.
    import shutil

    shutil.copytree(run, tmp_path / "damaged")
    weights = next((tmp_path / "damaged" / "checkpoints").glob("epoch-*/model.weights.h5"))
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert train.cli(SMALL + ["--epochs", "3", "--out", str(tmp_path), "--name", "damaged", "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{weights} is corrupt (" in err and "another --name" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "damaged" / "model.keras").read_bytes() == (run / "model.keras").read_bytes()

    # Different model flags are refused; the same ones resume at epoch 2.
    assert train.cli(SMALL + ["--epochs", "3", "--out", str(tmp_path), "--name", "run", "--resume", "--hidden-dim", "32"]) == 2
    train.main(SMALL + ["--epochs", "3", "--out", str(tmp_path), "--name", "run", "--resume"])
    epochs = [int(row["epoch"]) for row in _history(run / "history.csv")]
    assert epochs == [0, 1, 2]
    assert not os.path.exists(run / "checkpoints")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
def test_cooldown_window_is_set_once_and_kept_across_a_resume(tmp_path, monkeypatch, capsys):
    argv = SMALL + ["--epochs", "4", "--cooldown", "0.25", "--out", str(tmp_path), "--name", "run"]
    _crash_after_epoch(1, argv, monkeypatch)
    # 256 examples in batches of 64: 16 updates in 4 epochs, the last quarter cools down.
    assert "Cooldown: the learning rate falls linearly to zero from iteration 12 to 16." in capsys.readouterr().out
    without = [arg for arg in argv if arg not in ("--cooldown", "0.25")]
    assert train.cli(without + ["--resume"]) == 2  # the optimizer holds the window: one clear error
    train.main(argv + ["--resume"])
    assert "Cooldown (resumed): the learning rate falls linearly to zero from iteration 12 to 16." in capsys.readouterr().out
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.optimizer.cooldown and list(keras.ops.convert_to_numpy(model.optimizer.cooldown_window)) == [12, 16]
    with pytest.raises(SystemExit):  # a usage error, before anything is written
        train.parse_args(SMALL + ["--cooldown", "1.5", "--out", str(tmp_path), "--name", "bad"])
    assert not os.path.exists(tmp_path / "bad")


def test_bad_cli_arguments_exit_with_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        train.parse_args(["--resume"])
    with pytest.raises(SystemExit):
        train.parse_args(["--position", "absolute"])


@pytest.mark.slow
def test_tiny_model_learns_the_builtin_task():
    """>= 95% validation token accuracy within 376 training steps."""
    keras.utils.set_random_seed(0)
    task = kt.data.SyntheticTranslationTask(
        num_nouns=16, num_adjectives=8, num_verbs=8, num_adverbs=4, num_prepositions=4, max_adjectives=1
    )
    train_x, train_y = task.dataset(3000, seed=1)
    val_x, val_y = task.dataset(300, seed=2)
    model = kt.Transformer(
        task.source_vocabulary_size,
        task.target_vocabulary_size,
        num_layers=1,
        hidden_dim=64,
        num_heads=4,
        intermediate_dim=128,
        dropout=0.0,
        max_sequence_length=32,
    )
    model.compile(optimizer=kt.optimizers.transformer_adam(64, warmup_steps=200))
    model.fit(train_x, train_y, batch_size=32, epochs=4, verbose=0)
    _, accuracy = model.evaluate(val_x, val_y, verbose=0)
    assert accuracy >= 0.95
    # Greedy arg-max under teacher forcing reproduces most whole sentences.
    predictions = np.argmax(model.predict(val_x, verbose=0), -1)
    real = val_y != 0
    assert np.mean(((predictions == val_y) | ~real).all(1)) > 0.6


@pytest.mark.slow
def test_average_last_epochs_is_scored_and_kept_only_when_better(tmp_path):
    results = train.main(SMALL + ["--epochs", "3", "--average-last", "2", "--out", str(tmp_path), "--name", "run"])
    run = tmp_path / "run"
    averaged = results["averaged"]
    assert averaged["epochs"] == [2, 3]
    assert sorted(os.listdir(run / "epoch_weights")) == ["epoch-0002.npz", "epoch-0003.npz"]
    # The saved model is whichever scored better (validation cross-entropy here) and evaluation.json says so.
    best = min(averaged["score"], averaged["best_epoch_score"])
    assert results["cross_entropy"] == pytest.approx(best, rel=1e-5)
    assert averaged["kept_average"] == (averaged["score"] < averaged["best_epoch_score"])
    assert json.loads((run / "evaluation.json").read_text())["averaged"] == averaged

    with pytest.raises(SystemExit):
        train.parse_args(["--average-last", "0"])
    with pytest.raises(SystemExit):
        train.parse_args(["--task", "classify", "--average-last", "2"])


@pytest.mark.reliability
def test_an_unwritable_out_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)  # root can write anywhere: refuse as a read-only disk would
    assert train.cli(SMALL + ["--out", str(tmp_path / "runs"), "--name", "run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: cannot write runs into") and "--out" in error and "Permission denied" in error
    assert not os.path.exists(tmp_path / "runs" / "run")
    monkeypatch.undo()
    if os.path.isdir("/proc/self"):  # a file system where nothing can be created
        assert train.cli(SMALL + ["--out", "/proc/keras-transformer-runs", "--name", "run"]) == 2
        assert "cannot write runs into /proc/keras-transformer-runs" in capsys.readouterr().err


def test_help_shows_defaults_and_misplaced_flags_are_refused(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = capsys.readouterr().out
    for default in ("model size (default: tiny)", "(default: 64)", "(default: sentencepiece)", "(default: runs)"):
        assert default in " ".join(text.split()), default
    refused = [
        (["--early-stopping", "0"], "--early-stopping is a patience"),
        (["--share-embeddings"], "--joint-vocabulary"),
        (["--task", "classify", "--learning-rate-scale", "1.5"], "does not take --learning-rate-scale"),
        (["--task", "lm", "--tie-embeddings"], "does not take --tie-embeddings"),
        (["--task", "tag", "--share-embeddings"], "does not take --share-embeddings"),
    ]
    for argv, message in refused:
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err, argv
    args, _, training = train.parse_args(["--no-tensorboard", "--early-stopping", "3"])
    assert (training.tensorboard, training.early_stopping) == (False, 3)


def test_config_file_gives_defaults_the_command_line_overrides(tmp_path, capsys):
    config = tmp_path / "settings.yaml"
    config.write_text("preset: small\nepochs: 3\nlabel-smoothing: 0.2\nno_export: true\n")
    args, options, training = train.parse_args(["--config", str(config), "--epochs", "5"])
    assert (options.preset, options.epochs, options.label_smoothing, args.no_export) == ("small", 5, 0.2, True)
    # A run's own config.json: its training section, with name and resume left to the command line.
    saved = {"model": {}, "training": {"preset": "tiny", "epochs": 7, "task": "translate", "resume": True,
                                       "batch_size": 16, "tensorboard": False, "average_last": None}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(saved))
    args, options, training = train.parse_args(["--config", str(tmp_path / "config.json"), "--name", "again"])
    assert (options.epochs, options.batch_size, training.tensorboard, args.resume) == (7, 16, False, False)
    for text, message in (('{"epocs": 3}', "unknown setting(s) epocs"), ("[1, 2]", "mapping"), ("{", "not valid JSON")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(SystemExit):
            train.parse_args(["--config", str(tmp_path / "bad.json")])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a setting the task does not take
        train.parse_args(["--config", str(config), "--task", "classify", "--learning-rate-scale", "3"])
    assert "does not take --learning-rate-scale" in capsys.readouterr().err


@pytest.mark.slow
def test_a_runs_config_json_is_a_valid_config(tmp_path):
    argv = SMALL + ["--epochs", "1", "--out", str(tmp_path), "--name", "a", "--no-export", "--no-tensorboard"]
    train.main(argv)
    args, options, training = train.parse_args(["--config", str(tmp_path / "a" / "config.json"), "--name", "b"])
    _, first, first_training = train.parse_args(argv)
    assert options == first and training == first_training


def test_tokenizer_flag_is_refused_where_no_tokenizer_is_trained(tmp_path, capsys):
    for argv in (["--task", "tag", "--tokenizer", "wordpiece"], ["--tokenizer", "sentencepiece"],
                 ["--task", "classify", "--tokenizer", "wordpiece"]):  # fmt: skip
        assert train.cli(argv + ["--out", str(tmp_path), "--epochs", "1"]) == 2, argv
        assert "--tokenizer: the" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    from keras_transformer.tasks import TASKS, TranslateOptions

    task = TASKS["translate"](TranslateOptions(train_tsv="t.tsv", tokenizer="wordpiece"))
    assert task.trains_tokenizer() and task.options.subword_tokenizer == "wordpiece"
    assert TranslateOptions(train_tsv="t.tsv").subword_tokenizer == "sentencepiece"


def test_resume_refuses_other_data_or_tokenizer_settings_and_keeps_the_run(tmp_path, monkeypatch, capsys):
    """A resumed run goes on with its data and tokenizers: a changed setting is refused, not recorded."""
    argv = SMALL + ["--epochs", "2", "--out", str(tmp_path), "--name", "run"]
    _crash_after_epoch(0, argv, monkeypatch)
    config = (tmp_path / "run" / "config.json").read_text()
    for change in (["--vocab-size", "500"], ["--max-line-chars", "80"]):
        assert train.cli(argv + change + ["--resume"]) == 2
        err = capsys.readouterr().err
        assert "--resume continues the run on its own data and tokenizers" in err, err
        assert f"--{change[0][2:]} (was" in err
        assert (tmp_path / "run" / "config.json").read_text() == config  # nothing recorded
    train.main(argv + ["--resume"])  # the same settings resume
    assert len(_history(tmp_path / "run" / "history.csv")) == 2


def test_config_values_go_through_each_flags_type_and_choices(tmp_path, capsys):
    cases = [
        ({"tensorboard": "false"}, "--tensorboard is a switch: give true or false"),
        ({"no_export": 1}, "--no-export is a switch"),
        ({"verbose": 7}, "--verbose must be one of 0, 1, 2"),
        ({"epochs": "ten"}, "--epochs: invalid literal"),
        ({"epochs": True}, "--epochs takes one value"),
        ({"label_smoothing": "nan"}, "--label-smoothing: must be a finite number"),
        ({"precision": "float64"}, "--precision must be one of"),
        ({"name": "other"}, "name cannot come from a settings file"),
        ({"resume": True}, "resume cannot come from a settings file"),
        ({"config": "x.json"}, "config cannot come from a settings file"),
    ]
    for values, message in cases:
        (tmp_path / "settings.json").write_text(json.dumps(values))
        with pytest.raises(SystemExit):
            train.parse_args(["--config", str(tmp_path / "settings.json")])
        assert message in capsys.readouterr().err, (values, message)
    (tmp_path / "settings.json").write_text(json.dumps({"epochs": "3", "tensorboard": False, "dropout": 0.2}))
    args, options, training = train.parse_args(["--config", str(tmp_path / "settings.json")])
    assert (options.epochs, training.tensorboard, options.dropout) == (3, False, 0.2)  # typed as on the command line


def test_init_from_refuses_a_vocabulary_size_it_cannot_use(tmp_path, capsys):
    for argv in (["--train-tsv", "t.tsv", "--init-from", "runs/x", "--vocab-size", "500"],
                 ["--task", "classify", "--init-from", "runs/x", "--vocab-size", "500"]):  # fmt: skip
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        err = capsys.readouterr().err
        assert "--init-from" in err and "--vocab-size" in err, err
