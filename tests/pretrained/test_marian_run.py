"""An imported Marian run through the project's tools: export, verify, run_tflite, attention, fine-tuning."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.mark.slow
def test_every_export_of_an_imported_run_equals_keras(imported, sentences, tmp_path, capsys):
    from export import export_run, run_tflite, verify
    from keras_transformer import attention
    from keras_transformer.translator import Translator

    sources = _write(tmp_path / "src.txt", [s for s, _ in sentences[:60]])
    references = _write(tmp_path / "ref.txt", [t for _, t in sentences[:60]])
    calibration = tuple(s for s, _ in sentences[60:160])
    paths = export_run(imported, _formats(), calibration_sentences=calibration, log=None)
    assert set(paths) == set(_formats())
    rows = verify.main(["--model", imported, "--data", sources, references, "--latency-sentences", "2"])
    by_name = {row["artifact"]: row for row in rows}
    for name in ("saved_model", "tflite"):  # float32: the same tokens
        assert by_name[name]["token_agreement"] == 1.0 and by_name[name]["step_agreement"] == 1.0, by_name[name]
    assert by_name["tflite_text"]["sentences_equal"] == 1.0
    assert by_name["tflite_dynamic_int8"]["step_agreement"] >= 0.9
    assert by_name["tflite_int8"]["bleu"] > 0.5 * by_name["keras"]["bleu"], by_name["tflite_int8"]
    capsys.readouterr()
    texts = [s for s, _ in sentences[:5]] + [""]
    run_tflite.main(["--model", imported, *texts])
    assert capsys.readouterr().out.split("\n")[:-1] == Translator.from_run(imported, beam_size=1).translate(texts)
    picture = tmp_path / "attention.png"
    assert attention.main(["--model", imported, "--out", str(picture), sentences[0][0]]) == 0
    assert picture.stat().st_size > 0


def _formats():
    from export import formats_for

    return formats_for("translate", ["all"])


@pytest.mark.slow
def test_fine_tuning_starts_from_the_imported_weights_and_lowers_the_loss(imported, loaded, sentences, tmp_path):
    import keras

    import train
    from keras_transformer.run_directory import RunDirectory
    from keras_transformer.tasks import TASKS, TranslateOptions
    from tests.pretrained.checkpoint import synthetic_pairs

    # The user's own text: the same languages, sentences the checkpoint has not seen.
    pairs = synthetic_pairs(600, seed=21)
    train_tsv = _write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in pairs[:500]])
    val_tsv = _write(tmp_path / "val.tsv", [f"{s}\t{t}" for s, t in pairs[500:]])
    task = TASKS["translate"](TranslateOptions(init_from=imported, max_length=64, train_tsv=train_tsv, val_tsv=val_tsv))
    task.prepare(RunDirectory(tmp_path / "probe", create=True))
    model = task.build_model()
    for mine, theirs in zip(model.get_weights(), loaded.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert model.get_config()["position_layout"] == "concatenated" and model.get_config()["output_bias"]
    before = model.evaluate(task._validation_dataset(), verbose=0, return_dict=True)["loss"]
    keras.utils.set_random_seed(0)
    out = tmp_path / "runs"
    train.main(["--init-from", imported, "--train-tsv", train_tsv, "--val-tsv", val_tsv, "--max-length", "64",
                "--epochs", "2", "--batch-size", "32", "--warmup-steps", "20", "--learning-rate-scale", "0.1",
                "--out", str(out), "--name", "tuned",
                "--no-export", "--verbose", "0"])  # fmt: skip
    with open(out / "tuned" / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert float(history[-1]["val_loss"]) < before, (before, history)
    for name in os.listdir(os.path.join(imported, "tokenizers")):  # the run's own tokenizers, unchanged
        assert (out / "tuned" / "tokenizers" / name).read_bytes() == (Path(imported) / "tokenizers" / name).read_bytes()


@pytest.mark.slow
def test_a_marian_compatible_run_translates_alike_in_transformers_and_ctranslate2(tmp_path):
    """A run trained here with --marian-compatible, exported to Marian: transformers and CTranslate2 give its tokens."""
    import train
    from export import export_run
    from tests.pretrained.checkpoint import synthetic_pairs
    from tests.pretrained.test_marian import MAX_LENGTH, _generate, ctranslate2_ids
    from keras_transformer.run_directory import RunDirectory
    from keras_transformer.translator import Translator
    from transformers import MarianMTModel, MarianTokenizer

    pairs = synthetic_pairs(1600, seed=3)
    train_tsv = _write(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in pairs[:1400]])
    val_tsv = _write(tmp_path / "val.tsv", [f"{s}\t{t}" for s, t in pairs[1400:]])
    out = tmp_path / "runs"
    train.main(["--train-tsv", train_tsv, "--val-tsv", val_tsv, "--tokenizer", "sentencepiece", "--vocab-size", "100",
                "--joint-vocabulary", "--marian-compatible", "--num-layers", "2", "--hidden-dim", "32", "--num-heads",
                "4", "--intermediate-dim", "64", "--dropout", "0", "--max-length", "64", "--warmup-steps", "100",
                "--learning-rate-scale", "1", "--batch-size", "32", "--epochs", "6", "--out", str(out), "--name", "m",
                "--no-export", "--verbose", "0"])  # fmt: skip
    run = RunDirectory(out / "m").load()
    path = export_run(str(out / "m"), ["marian"], log=None)["marian"]
    model, tokenizer = MarianMTModel.from_pretrained(path).eval(), MarianTokenizer.from_pretrained(path)
    texts = [s for s, _ in pairs[1400:1500]]
    theirs = _generate(model, tokenizer, texts, num_beams=1)
    ct2 = ctranslate2_ids(path, tokenizer, texts, tmp_path)
    # Ours in Marian ids: the export's vocabulary is the SentencePiece model's pieces after </s>, <unk>.
    translator = Translator(run.model, run.source_tokenizer, run.target_tokenizer, max_length=MAX_LENGTH)
    ours = np.asarray(run.model.generate(translator.source_ids(texts), max_length=MAX_LENGTH))
    ours = [[0 if i == 3 else int(i) - 2 for i in row if i != 0] for row in ours]
    whole = [i for i, row in enumerate(theirs) if len(row) < MAX_LENGTH]  # not cut (where transformers forces </s>)
    assert len(whole) >= 90
    assert [ours[i] for i in whole] == [theirs[i] for i in whole]
    assert [ct2[i] for i in whole] == [theirs[i] for i in whole]
    assert np.mean([row[0] != 1 for row in theirs]) > 0.9  # it translates: not unknown tokens
