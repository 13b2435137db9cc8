"""train.py on parallel text made in the test, then the translate CLI on its run."""

import csv
import io
import json
import os

import numpy as np
import pytest

import train
from tests.conftest import MODEL
from keras_transformer import translate
from keras_transformer.evaluation import corpus_scores
from keras_transformer.translator import Translator


@pytest.fixture
def run(trained_run):
    """The tests' trained text run: these tests read its model, tokenizers and logs, not its export."""
    return trained_run


def test_run_directory_holds_tokenizers_hypotheses_and_scores(run, corpus):
    _, _, targets = corpus
    names = {p.name for p in run.iterdir()}
    assert {"model.keras", "config.json", "tokenizers", "hypotheses.txt", "evaluation.json", "history.csv"} <= names
    hypotheses = (run / "hypotheses.txt").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 200
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["bleu"] == pytest.approx(corpus_scores(hypotheses, targets[1000:])["bleu"])
    assert evaluation["bleu"] > 50
    with open(run / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 8 and "val_bleu" in history[0]
    # The kept model is the epoch with the best validation BLEU.
    assert evaluation["bleu"] == pytest.approx(max(float(row["val_bleu"]) for row in history), abs=1e-6)


def test_translate_cli_translates_training_sentences_back(run, corpus, monkeypatch, capsys):
    _, sources, targets = corpus
    lines = sources[:40]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n"))
    assert translate.main(["--model", str(run), "--batch-size", "16", "--beam-size", "1"]) == 0
    output = capsys.readouterr().out.split("\n")[:-1]
    assert len(output) == 41 and output[20] == ""  # an empty line stays empty
    translations = output[:20] + output[21:]
    assert np.mean([t == r for t, r in zip(translations, targets[:40])]) >= 0.5
    # Beam search (the default) translates at least as many exactly.
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert translate.main(["--model", str(run), "--batch-size", "16"]) == 0
    beamed = capsys.readouterr().out.split("\n")[:-1]
    assert np.mean([t == r for t, r in zip(beamed, targets[:40])]) >= np.mean(
        [t == r for t, r in zip(translations, targets[:40])]
    ) - 0.1
    # --exact-stop reaches the Translator's exact_stop.
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines[:4]) + "\n"))
    assert translate.main(["--model", str(run), "--length-penalty", "1.5", "--exact-stop"]) == 0
    exact = Translator.from_run(str(run), length_penalty=1.5, exact_stop=True).translate(lines[:4])
    assert capsys.readouterr().out.split("\n")[:-1] == exact


def test_translate_cli_replaces_bad_bytes_and_checks_max_length(run, corpus, monkeypatch, capsys):
    _, sources, _ = corpus
    data = (sources[0] + "\n").encode() + b"caf\xe9 au lait\n" + (sources[1] + "\n").encode()

    class Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", Stdin())
    assert translate.main(["--model", str(run), "--beam-size", "1"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.split("\n")[:-1]) == 3 and "1 input line(s) are not UTF-8 (first: line 2)" in captured.err
    for bad in ("0", "-3", "100000"):
        assert translate.main(["--model", str(run), "--max-length", bad]) == 2
        assert "--max-length must be in [1, 24]" in capsys.readouterr().err


def test_translator_truncates_over_long_input_and_counts_it(run, corpus):
    translator = Translator.from_run(str(run))
    _, sources, _ = corpus
    long_input = " ".join(sources[:10])
    assert len(translator.translate([long_input, "", sources[0]])) == 3
    assert translator.truncated == 1


def test_translate_cli_errors_on_bad_run_directories(tmp_path, capsys):
    with pytest.raises(SystemExit):
        translate.main(["--model", str(tmp_path), "--beam-size", "0"])
    assert "--beam-size" in capsys.readouterr().err
    assert translate.main(["--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # One check of a run directory (`RunDirectory.load`) names the first missing file.
    assert translate.main(["--model", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert translate.main(["--model", str(tmp_path)]) == 2
    assert "model.keras is missing" in capsys.readouterr().err
    (tmp_path / "model.keras").write_text("")
    assert translate.main(["--model", str(tmp_path)]) == 2
    assert "tokenizers/tokenizers.json is missing" in capsys.readouterr().err
    (tmp_path / "tokenizers").mkdir()
    (tmp_path / "tokenizers" / "tokenizers.json").write_text("{}")
    assert translate.main(["--model", str(tmp_path)]) == 2
    assert "not a .keras archive" in capsys.readouterr().err


def test_train_cli_rejects_incomplete_text_flags():
    with pytest.raises(SystemExit):
        train.parse_args(["--train-src", "a.txt"])
    with pytest.raises(SystemExit):
        train.parse_args(["--val-src", "a.txt", "--val-tgt", "b.txt"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # CSVLogger left open by the crash
def test_resuming_a_text_run_reuses_its_tokenizers(corpus, tmp_path, monkeypatch):
    import keras

    import keras_transformer as kt

    directory, _, _ = corpus
    argv = MODEL + [
        "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
        "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "sentencepiece", "--vocab-size", "48",
        "--epochs", "2", "--out", str(tmp_path), "--name", "text", "--no-export",
    ]  # fmt: skip

    class Crash(Exception):
        pass

    class CrashAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Crash()

    original_fit = kt.Transformer.fit
    monkeypatch.setattr(
        kt.Transformer, "fit", lambda self, *a, callbacks=(), **k: original_fit(self, *a, callbacks=[*callbacks, CrashAfterFirstEpoch()], **k)
    )
    with pytest.raises(Crash):
        train.main(argv)
    monkeypatch.setattr(kt.Transformer, "fit", original_fit)
    tokenizer_file = tmp_path / "text" / "tokenizers" / "source.spm"
    before = tokenizer_file.read_bytes(), tokenizer_file.stat().st_mtime_ns
    train.main(argv + ["--resume"])
    assert (tokenizer_file.read_bytes(), tokenizer_file.stat().st_mtime_ns) == before
    with open(tmp_path / "text" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1]
    assert json.loads((tmp_path / "text" / "evaluation.json").read_text())["bleu"] >= 0
    # The resumed process read nothing ahead: the report of the first pass is kept.
    assert "1000 pairs kept of 1000 lines" in json.loads((tmp_path / "text" / "config.json").read_text())["task"]["read"][0]


@pytest.mark.slow
def test_mixed_bfloat16_run_trains_scores_and_saves_a_float32_model(corpus, tmp_path):
    import keras

    directory, _, _ = corpus
    results = train.main(
        MODEL + [
            "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
            "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "wordpiece", "--vocab-size", "200",
            "--epochs", "2", "--out", str(tmp_path), "--name", "bf16", "--precision", "mixed_bfloat16",
            "--export", "tflite",
        ]
    )  # fmt: skip
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    with open(tmp_path / "bf16" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 2 and all(np.isfinite(float(row["loss"])) for row in history)
    assert "val_bleu" in history[0] and np.isfinite(results["bleu"])
    model = keras.saving.load_model(tmp_path / "bf16" / "model.keras", compile=False)
    assert {layer.compute_dtype for layer in model._flatten_layers()} == {"float32"}
    assert (tmp_path / "bf16" / "export" / "model.tflite").is_file()


def test_translator_from_run_beam_by_default_n_best_and_per_call_settings(run, corpus):
    import keras_transformer as kt

    assert kt.Translator is Translator
    _, sources, _ = corpus
    texts = sources[1000:1004] + [""]
    translator = kt.Translator.from_run(str(run))
    assert (translator.beam_size, translator.length_penalty) == (4, 0.6)
    best = translator.translate(texts)
    assert best[-1] == "" and all(best[:-1])
    n_best = translator.translate(texts, n_best=3)
    assert [len(row) for row in n_best] == [3, 3, 3, 3, 1] and n_best[-1] == [("", 0.0)]
    assert [row[0][0] for row in n_best] == best
    assert all(row[0][1] >= row[1][1] >= row[2][1] for row in n_best[:-1])  # best first
    greedy = Translator.from_run(str(run), beam_size=1).translate(texts)
    assert translator.translate(texts, beam_size=1) == greedy
    # exact_stop runs the same beams further: the best score can only rise (alpha > 0).
    early = translator.translate(texts, n_best=1, length_penalty=1.5)
    exact = Translator.from_run(str(run), length_penalty=1.5, exact_stop=True).translate(texts, n_best=1)
    assert all(e[0][1] >= b[0][1] - 1e-5 for e, b in zip(exact, early))
    assert translator.translate(texts, n_best=1, length_penalty=1.5, exact_stop=True) == exact
    bad = (
        ({"n_best": 5}, "n_best"),
        ({"beam_size": 0}, "beam_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"exact_stop": 1}, "exact_stop"),
    )
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            translator.translate(texts, **kwargs)


def test_translate_progress_redraws_on_a_terminal_and_adds_a_line_every_interval_elsewhere():
    import io

    from keras_transformer.translator import terminal_progress

    now = [0.0]
    log = io.StringIO()  # a pipe or file
    progress = terminal_progress(log, interval=30, clock=lambda: now[0])
    for done, seconds in ((10, 5), (20, 29), (30, 31), (40, 40), (50, 62), (60, 70)):
        now[0] = seconds
        progress(done, 60)
    assert log.getvalue() == "translated 30/60 sentences\ntranslated 50/60 sentences\ntranslated 60/60 sentences\n"
    short = io.StringIO()
    progress = terminal_progress(short, interval=30, clock=lambda: 1.0)
    progress(5, 10), progress(10, 10)
    assert short.getvalue() == ""  # shorter than the interval: nothing

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = terminal_progress(stream)
    progress(64, 100)
    progress(100, 100)
    assert stream.getvalue() == "\rtranslated 64/100 sentences\rtranslated 100/100 sentences\n"


def _events(directory):
    """`{tag: [(step, kind)]}` of the TensorBoard event files under `directory`."""
    import tensorflow as tf

    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if "tfevents" not in name:
                continue
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    kind = value.metadata.plugin_data.plugin_name or "scalar"
                    found.setdefault(f"{os.path.basename(root)}/{value.tag}", []).append((event.step, kind))
    return found


def test_tensorboard_holds_scalars_scores_and_attention_images(run):
    events = _events(run / "tensorboard")
    for tag in ("train/epoch_loss", "train/epoch_learning_rate", "validation/epoch_bleu", "validation/epoch_chrf"):
        assert len(events.get(tag, [])) == 8, (tag, sorted(events))  # one per epoch
    images = [tag for tag in events if tag.startswith("attention/")]
    assert sorted(images) == [f"attention/attention/sentence_{i}" for i in (1, 2, 3)]
    assert all(kind == "images" for tag in images for _, kind in events[tag])
    assert [step for step, _ in events[images[0]]] == list(range(8))


def test_early_stopping_counts_the_epochs_of_earlier_processes():
    import keras

    from keras_transformer.callbacks import EarlyStopping

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    history = [{"val_loss": "1.0"}, {"val_loss": "0.5"}, {"val_loss": "0.6"}, {"val_loss": "0.7"}]
    stopper = EarlyStopping("val_loss", "min", patience=3, history=history)
    stopper.set_model(model)
    stopper.on_train_begin()
    assert (stopper.best, stopper.wait) == (0.5, 2)
    stopper.on_epoch_end(4, {"val_loss": 0.55})
    assert model.stop_training
    fresh = EarlyStopping("val_bleu", "max", patience=2)
    fresh.set_model(model)
    model.stop_training = False
    fresh.on_train_begin()
    fresh.on_epoch_end(0, {"val_bleu": 10.0})
    fresh.on_epoch_end(1, {"val_bleu": 12.0})
    assert not model.stop_training and fresh.wait == 0


def test_validation_decoding_shows_progress_on_a_terminal_unless_quiet(monkeypatch):
    import sys

    from keras_transformer.evaluation import BleuCallback

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class Translator:
        def translate(self, texts, batch_size=64, progress=None):
            if progress:
                progress(len(texts), len(texts))
            return list(texts)

    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    BleuCallback(Translator(), ["a b c"], ["a b c"], progress=True).on_epoch_end(0, {})
    assert "epoch 1 validation: 1/1 sentences" in stderr.getvalue()
    stderr.truncate(0)
    BleuCallback(Translator(), ["a b c"], ["a b c"]).on_epoch_end(0, {})  # --verbose 0 / 2
    assert "validation:" not in stderr.getvalue()


@pytest.mark.slow
def test_init_from_continues_a_translation_run_with_its_model_and_tokenizers(run, corpus, tmp_path, capsys):
    import keras

    from keras_transformer.tasks import TASKS, TranslateOptions

    directory, _, _ = corpus
    data = ["--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
            "--val-tsv", str(directory / "val.tsv")]  # fmt: skip
    # The task starts from the run's weights (dropout may change), with its tokenizers.
    task = TASKS["translate"](TranslateOptions(init_from=str(run), dropout=0.0, max_length=24, train_src=data[1],
                                               train_tgt=data[3], val_tsv=data[5]))  # fmt: skip
    from keras_transformer.run_directory import RunDirectory

    task.prepare(RunDirectory(tmp_path / "probe", create=True))
    model, original = task.build_model(), keras.saving.load_model(run / "model.keras")
    assert model.num_layers == original.num_layers and model.dropout == 0.0
    for mine, theirs in zip(model.get_weights(), original.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    # The command line: one more epoch, the same tokenizers, the architecture flags refused.
    out = tmp_path / "runs"
    argv = MODEL + data + ["--init-from", str(run), "--epochs", "1", "--out", str(out), "--name", "more", "--no-export"]
    argv = [a for a in argv if a not in ("--tokenizer", "wordpiece")]
    argv = _without_architecture(argv)
    train.main(argv)
    for name in os.listdir(run / "tokenizers"):
        assert (out / "more" / "tokenizers" / name).read_bytes() == (run / "tokenizers" / name).read_bytes()
    assert json.loads((out / "more" / "config.json").read_text())["task"]["init_from"] == str(run)
    with pytest.raises(SystemExit):
        train.parse_args(argv + ["--hidden-dim", "64", "--name", "bad"])
    assert "takes the architecture and tokenizers of its run; drop --hidden-dim" in capsys.readouterr().err


def _without_architecture(argv):
    """`argv` without the architecture flags (and their values) that `--init-from` refuses."""
    drop = {"--num-layers", "--hidden-dim", "--num-heads", "--intermediate-dim", "--vocab-size"}
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in drop:
            skip = True
        else:
            kept.append(item)
    return kept
