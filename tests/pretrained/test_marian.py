"""A Marian (OPUS-MT) checkpoint made by transformers, imported: the same ids, logits and translations."""

import json
import os
import shutil

import numpy as np
import pytest


def marian_ids(tokenizer, ids):
    """This project's ids as the checkpoint's (the start id is the pad piece)."""
    return [int(tokenizer.order[i]) for i in ids]


def test_tokenization_equals_marian_tokenizer(hf, loaded, sentences):
    import tensorflow as tf

    _, tokenizer = hf
    sources = [s for s, _ in sentences]
    targets = [t for _, t in sentences]
    rng = np.random.default_rng(0)
    odd = ["", "   ", "ж", "Ωmega €5 😀 naïve", "UPPER CASE.", "a\tb  c", "x" * 300, "12,345.67", ">>xx<< a lang code",
           " ".join(sources[:40])]  # fmt: skip
    mutated = []
    for text in sources + targets:  # unknown characters dropped into sentences
        chars = list(text)
        for _ in range(rng.integers(0, 3)):
            chars.insert(int(rng.integers(0, len(chars) + 1)), str(rng.choice(list("жßçΩ€😀ü%#"))))
        mutated.append("".join(chars))
    texts = (sources + targets + mutated + odd * 20)[:1000]
    assert len(texts) == 1000
    source, target = loaded.source_tokenizer, loaded.target_tokenizer
    ours = source.tokenize(tf.constant(texts)).to_list()
    theirs = tokenizer(texts)["input_ids"]
    assert [marian_ids(source, row) for row in ours] == theirs
    ours = target.tokenize(tf.constant(texts)).to_list()
    theirs = tokenizer(text_target=texts)["input_ids"]  # ends with </s>: the pipelines add our end id
    assert [marian_ids(target, row) + [0] for row in ours] == theirs
    assert any(1 in row for row in theirs)  # unknown pieces were part of it


def test_teacher_forced_logits_equal_transformers(hf, loaded, sentences):
    import torch

    model, tokenizer = hf
    pairs = sentences[:16]
    batch = tokenizer([s for s, _ in pairs], text_target=[t for _, t in pairs], return_tensors="pt", padding=True)
    pad = model.config.pad_token_id
    labels = batch["labels"].numpy()
    with torch.no_grad():
        theirs = model(**batch).logits.numpy()
    target = loaded.target_tokenizer
    to_ours = {int(m): i for i, m in enumerate(target.order) if i != 2}  # the pad piece as padding (0)
    encoder = np.vectorize(to_ours.get)(batch["input_ids"].numpy())
    decoder_inputs = np.concatenate([np.full((len(pairs), 1), 2), np.vectorize(to_ours.get)(labels[:, :-1])], 1)
    ours = np.asarray(loaded.model({"encoder_token_ids": encoder.astype("int32"),
                                    "decoder_token_ids": decoder_inputs.astype("int32")}))  # fmt: skip
    real = labels != pad  # padded batch: compare real target positions, every id but the pad piece
    columns = [to_ours[m] for m in range(len(target.vocabulary)) if m != pad]
    difference = np.abs(ours[..., columns] - np.delete(theirs, pad, axis=-1))[real].max()
    assert difference <= 1e-4 * np.abs(theirs[real]).max(), difference
    assert (batch["attention_mask"].numpy() == 0).any() and (~real).any()  # padding on both sides


MAX_LENGTH = 60


def _generate(model, tokenizer, texts, scores=False, **settings):
    """transformers' translations as Marian ids; with `scores`, also each step's `(B, V)` logits."""
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**batch, do_sample=False, max_new_tokens=MAX_LENGTH, output_logits=scores,
                                return_dict_in_generate=True, **settings)  # fmt: skip
    rows = [[int(i) for i in row[1:] if i != model.config.pad_token_id] for row in output.sequences.numpy()]
    return (rows, [step.numpy() for step in output.logits]) if scores else rows


def _near_tie(logits, row, position, ours, theirs, pad):
    """Whether transformers' logits for the two diverging tokens are within float error of each other."""
    step = logits[position][row]
    return ours != pad and abs(step[ours] - step[theirs]) < 1e-4 * np.abs(step).max()


def _ours(loaded, texts, **settings):
    from keras_transformer.translator import Translator

    translator = Translator(loaded.model, loaded.source_tokenizer, loaded.target_tokenizer, max_length=MAX_LENGTH)
    ids = translator.source_ids(texts)
    if settings.get("method") == "beam":
        ids = np.asarray(loaded.model.generate(ids, max_length=MAX_LENGTH, **settings)[0])[:, 0]
    else:
        ids = np.asarray(loaded.model.generate(ids, max_length=MAX_LENGTH))
    rows = []
    for row in ids:
        row = [int(i) for i in row if i != 0]
        rows.append(marian_ids(loaded.target_tokenizer, row))
    return rows


def test_greedy_translations_equal_transformers(hf, loaded, sentences):
    from keras_transformer.translator import Translator

    model, tokenizer = hf
    texts = [s for s, _ in sentences]
    theirs, logits = _generate(model, tokenizer, texts, scores=True, num_beams=1)
    ours = _ours(loaded, texts)
    # transformers ends a hypothesis cut at the maximum length with a forced end token (forced_eos_token_id).
    cut = [len(row) == MAX_LENGTH for row in theirs]
    assert sum(cut) <= 5
    differ = []
    for i, (mine, reference) in enumerate(zip(ours, theirs)):
        mine, reference = (mine[: MAX_LENGTH - 1], reference[: MAX_LENGTH - 1]) if cut[i] else (mine, reference)
        if mine != reference:  # only where two tokens tie within float error may the choice differ
            at = next(t for t in range(len(reference) + 1) if t == len(mine) or mine[t] != reference[t])
            assert _near_tie(logits, i, at, mine[at], reference[at], model.config.pad_token_id), (i, mine, reference)
            differ.append(i)
    assert len(differ) <= 2, differ
    text = Translator.from_run(loaded.path, beam_size=1, max_length=MAX_LENGTH).translate(texts)
    expected = tokenizer.batch_decode(theirs, skip_special_tokens=True)
    same = [i for i in range(len(texts)) if not cut[i] and i not in differ]
    assert [text[i] for i in same] == [expected[i] for i in same]
    # It translates (a briefly trained model): most words of the references.
    words = [len(set(t.split()) & set(r.split())) / len(set(r.split())) for t, (_, r) in zip(text, sentences)]
    assert np.mean(words) > 0.5


@pytest.mark.parametrize("alpha", [0.0, 1.0])  # 1.0: transformers' default
def test_beam_search_equals_transformers(hf, loaded, sentences, alpha):
    model, tokenizer = hf
    texts = [s for s, _ in sentences]
    # transformers' default stopping (early_stopping=False) is this project's: no live beam can do better;
    # its length penalty divides by length ** alpha, this project's "length" form.
    theirs = _generate(model, tokenizer, texts, num_beams=4, length_penalty=alpha, early_stopping=False)
    ours = _ours(loaded, texts, method="beam", beam_size=4, length_penalty=alpha, length_penalty_form="length")
    assert np.mean([a == b for a, b in zip(ours, theirs)]) >= 0.95


def _copy(marian, tmp_path, **changes):
    path, _ = marian
    copy = tmp_path / "checkpoint"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("changes, message", [
    ({"normalize_before": True}, "normalize_before=True is not supported"),
    ({"activation_function": "quick_gelu"}, "activation_function='quick_gelu' is not supported"),
    ({"scale_embedding": False}, "scale_embedding=False is not supported"),
    ({"decoder_layers": 3}, "encoder_layers=2 and decoder_layers=3 differ"),
    ({"model_type": "bart"}, "holds a 'bart' model"),
    ({"decoder_start_token_id": 0}, "decoder_start_token_id=0 is not the pad_token_id"),
    ({"d_model": 48}, "has shape"),
])  # fmt: skip
def test_a_config_it_cannot_compute_is_refused_naming_the_field(marian, tmp_path, changes, message):
    from keras_transformer.pretrained import CheckpointError, import_marian

    copy = _copy(marian, tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message):
        import_marian(str(copy), str(tmp_path / "runs"), "x")
    assert not (tmp_path / "runs").exists()


def test_missing_or_corrupt_files_are_one_line_and_write_nothing(marian, tmp_path, capsys):
    from keras_transformer.pretrained.__main__ import cli

    copy = _copy(marian, tmp_path)
    runs = tmp_path / "runs"
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    assert cli([str(copy), "--out", str(runs), "--name", "x"]) == 2
    (copy / "source.spm").write_bytes(b"not a model")
    assert cli([str(copy), "--out", str(runs), "--name", "x"]) == 2
    (copy / "vocab.json").unlink()
    assert cli([str(copy), "--out", str(runs), "--name", "x"]) == 2
    errors = capsys.readouterr().err.strip().split("\n")
    assert len(errors) == 3 and "model.safetensors is not a safetensors file" in errors[0], errors
    assert "source.spm is not a SentencePiece model" in errors[1] and "vocab.json is missing" in errors[2], errors
    assert not runs.exists()


def test_an_existing_run_is_not_overwritten_and_train_refuses_its_name(marian, imported, tmp_path, capsys):
    import train
    from keras_transformer.pretrained.__main__ import cli

    path, _ = marian
    before = os.path.getmtime(os.path.join(imported, "model.keras"))
    out, name = os.path.split(imported)
    assert cli([str(path), "--out", out, "--name", name]) == 2
    assert "already exists" in capsys.readouterr().err
    assert train.cli(["--out", out, "--name", name, "--epochs", "1", "--verbose", "0"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(imported, "model.keras")) == before


def ctranslate2_ids(directory, tokenizer, texts, tmp_path):
    """CTranslate2's greedy translations of `texts` (Marian ids) by the Marian directory `directory`."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(directory)).convert(str(tmp_path / "ct2"), force=True)
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu", intra_threads=2)
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"]) for text in texts]
    results = translator.translate_batch(tokens, beam_size=1, max_decoding_length=MAX_LENGTH)
    return [tokenizer.convert_tokens_to_ids(result.hypotheses[0]) + [0] for result in results]


def test_an_imported_run_exports_back_to_the_same_checkpoint(hf, imported, loaded, sentences, tmp_path):
    """Marian -> run -> Marian -> run: identical weights and tokenizer files; CTranslate2 reads the export."""
    import keras

    from export import export_run
    from keras_transformer.pretrained import import_marian
    from transformers import MarianTokenizer

    path = export_run(imported, ["marian"], out=str(tmp_path / "export"), log=None)["marian"]
    again = import_marian(path, str(tmp_path / "runs"), "again")
    for mine, theirs in zip(keras.saving.load_model(os.path.join(again, "model.keras")).get_weights(),
                            loaded.model.get_weights()):  # fmt: skip
        np.testing.assert_array_equal(mine, theirs)
    for name in os.listdir(os.path.join(imported, "tokenizers")):
        with open(os.path.join(imported, "tokenizers", name), "rb") as a, open(os.path.join(again, "tokenizers", name), "rb") as b:
            assert a.read() == b.read(), name
    model, _ = hf
    texts = [s for s, _ in sentences[:50]]
    theirs = _generate(model, MarianTokenizer.from_pretrained(path), texts, num_beams=1)
    ours = ctranslate2_ids(path, MarianTokenizer.from_pretrained(path), texts, tmp_path)
    same = [a == b for a, b, in zip(ours, theirs) if len(b) < MAX_LENGTH]
    assert len(same) >= 45 and all(same), (ours[:2], theirs[:2])


def test_a_run_marian_cannot_express_is_refused_naming_the_setting(trained_run, tmp_path):
    from export import ExportError, export_run

    with pytest.raises(ExportError, match="Train it with --marian-compatible"):
        export_run(str(trained_run), ["marian"], out=str(tmp_path / "export"), log=None)
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("setting", [
    {"position": "learned"}, {"normalize_first": True}, {"layer_norm_epsilon": 1e-6},
    {"scale_embeddings": False}, {"embedding_norm": True}, {"segment_vocabulary_size": 2},
])  # fmt: skip
def test_each_setting_marian_lacks_is_refused_by_name(setting):
    from types import SimpleNamespace

    import keras_transformer as kt
    from export import ExportError
    from export.marian import _check

    model = kt.Transformer.from_preset("tiny", source_vocabulary_size=20, target_vocabulary_size=20, **setting)
    (name, value), = setting.items()
    with pytest.raises(ExportError, match=f"the run has {name}={value!r}; Marian models have {name}="):
        _check(SimpleNamespace(family="translate", model=model, path="runs/x"))

