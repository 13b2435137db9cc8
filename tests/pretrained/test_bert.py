"""A BERT checkpoint made by transformers, imported: the same ids, hidden states, pooled output and masked-LM logits."""

import json
import os
import shutil

import numpy as np
import pytest

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "run", "##s", "##ing", "##ed", "un", "##able", "caf", "##e", "é",
         "e", "hello", "world", "naive", "na", "##ive", "über", "u", "##ber", "中", "国", "日", "本", "😀", "x",
         "##x", "a", "##a", "b", "##b", "o", "##o", "n", "##n", "don", "t", "mail"]  # fmt: skip
PUNCTUATION = list("!,.'-()[]?$+<=^`|~:;\"/")
# transformers' BertTokenizer settings (tokenizer_config.json) the tokenizer test covers.
SETTINGS = [
    {"do_lower_case": True}, {"do_lower_case": False}, {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "strip_accents": False}, {"do_lower_case": True, "tokenize_chinese_chars": False},
]  # fmt: skip


def make_bert_checkpoint(directory, pooler=True, head=True, extra_rows=3, seed=0, **config):
    """A tiny BERT checkpoint with random weights (every parameter perturbed, so none is at its initial value)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel

    vocabulary = ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocabulary += WORDS + PUNCTUATION
    settings = dict(vocab_size=len(vocabulary) + extra_rows, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)  # fmt: skip
    settings.update(config)
    torch.manual_seed(seed)
    model_class = BertForPreTraining if pooler and head else BertForMaskedLM if head else BertModel
    model = model_class(BertConfig(**settings)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    return model


def sentences(count, seed=0):
    """Made-up text: vocabulary words, accents and case, CJK, emoji, punctuation, control characters, long words."""
    rng = np.random.default_rng(seed)
    pool = [w.removeprefix("##") for w in WORDS] + PUNCTUATION + [
        "Naïve", "CAFÉ", "Über", "thecat", "x" * 120, "é" * 60, "é" * 101, "ab" * 50, "ab" * 51, "中国人",
        "hello,world!", "don't", "e-mail", "ＡＢ", "ﬁx", "İstanbul", "Straße", "ΣΟΦΙΑ", "😀😀", "가나", "e\u0301",
        "a\u200bb", "c\u00a0d", "tab\there", "line\u2028sep", "\ufeffbom", "nul\x00l", "\ufffd"]  # fmt: skip
    texts = ["", " ", "\t\n"]
    while len(texts) < count:
        texts.append(" ".join(str(rng.choice(pool)) for _ in range(rng.integers(1, 12))))
    return texts


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "bert-tiny"
    return path, make_bert_checkpoint(str(path))


@pytest.fixture(scope="module")
def imported(bert, tmp_path_factory):
    from keras_transformer.pretrained import import_checkpoint

    path, _ = bert
    return import_checkpoint(str(path), str(tmp_path_factory.mktemp("runs")), "bert", max_sequence_length=24)


@pytest.fixture(scope="module")
def loaded(imported):
    from keras_transformer.run_directory import RunDirectory

    return RunDirectory(imported).load()


def _relative(ours, theirs):
    relative = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    print(f"largest difference relative to the largest value: {relative:.2e}")
    return relative


def test_hidden_states_pooled_output_and_masked_lm_logits_equal_transformers(bert, loaded):
    import torch

    from keras_transformer.pretrained.bert import read_config, read_tokenizer

    path, hf = bert
    _, order, _ = read_tokenizer(str(path), read_config(str(path)))
    ours_of = np.empty(len(order), "int64")
    ours_of[order] = np.arange(len(order))  # the checkpoint's id -> this project's
    rng = np.random.default_rng(1)
    theirs = rng.integers(8, len(order), size=(4, 20))  # words, not special pieces
    theirs[:, 0], lengths = 5, [20, 13, 5, 2]  # [CLS] (the checkpoint's id 5) first
    segments = np.zeros_like(theirs)
    for row, length in enumerate(lengths):
        theirs[row, length - 1] = 6  # [SEP]
        theirs[row, length:] = 0  # [PAD]
        segments[row, length // 2 : length] = 1
    attention_mask = (theirs != 0).astype("int64")
    with torch.no_grad():
        output = hf(torch.tensor(theirs), attention_mask=torch.tensor(attention_mask),
                    token_type_ids=torch.tensor(segments), output_hidden_states=True)  # fmt: skip
        hidden = output.hidden_states[-1].numpy()
        pooled = hf.bert.pooler(output.hidden_states[-1]).numpy()
    model = loaded.model
    ids = ours_of[theirs].astype("int32")
    assert (ids[:, 0] == 2).all() and all(ids[r, n - 1] == 3 for r, n in enumerate(lengths))  # [CLS], [SEP]: start, end
    our_hidden = np.asarray(model.backbone(ids, segment_ids=segments.astype("int32")))
    real = attention_mask.astype(bool)
    assert _relative(our_hidden[real], hidden[real]) < 1e-4
    assert _relative(np.asarray(model.backbone.pool(our_hidden)), pooled) < 1e-4
    positions = np.array([[1, 3], [2, 5], [1, 4], [0, 1]], "int32")
    logits = np.asarray(model({"token_ids": ids, "segment_ids": segments.astype("int32"), "mask_positions": positions}))
    their_logits = np.take_along_axis(output.prediction_logits.numpy(), positions[:, :, None].astype("int64"), axis=1)
    assert _relative(logits, their_logits[:, :, order]) < 1e-4


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_tokenization_equals_bert_tokenizer(bert, tmp_path, settings):
    import tensorflow as tf
    from transformers import BertTokenizer

    from keras_transformer.pretrained.bert import read_config, read_tokenizer

    path, _ = bert
    directory = tmp_path / "checkpoint"
    shutil.copytree(path, directory)
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer, order, _ = read_tokenizer(str(directory), read_config(str(directory)))
    texts = sentences(1000)
    theirs = BertTokenizer.from_pretrained(str(directory))(texts, add_special_tokens=False)["input_ids"]
    ours = [[int(order[i]) for i in row] for row in tokenizer.tokenize(tf.constant(texts)).to_list()]
    mismatches = [(text, a, b) for text, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatches, mismatches[:3]
    assert sum(4 in row for row in theirs) > 10  # unknown words ([UNK], the checkpoint's id 4) were part of it


def test_kt_import_reads_bert_and_a_classifier_fine_tunes_with_frozen_layers(bert, imported, loaded, tmp_path, capsys):
    import train
    from keras_transformer.pretrained.__main__ import cli
    from keras_transformer.run_directory import RunDirectory

    path, _ = bert
    assert cli([str(path), "--out", str(tmp_path / "runs"), "--name", "b", "--max-length", "24"]) == 0
    assert "--task classify --init-from" in capsys.readouterr().out
    assert RunDirectory(tmp_path / "runs" / "b").load().family == "pretrain-mlm"
    assert loaded.model.backbone.pooler is not None and loaded.source_tokenizer.kind == "bert"
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(160):
        label = int(rng.integers(0, 2))
        words = rng.choice(["cat", "dog", "mat"] if label else ["hello", "world", "naive"], size=rng.integers(2, 8))
        lines.append(f"{' '.join(words)} {'!' if label else '?'}\t{'yes' if label else 'no'}\n")
    (tmp_path / "train.tsv").write_text("".join(lines))
    metrics = train.main(["--task", "classify", "--init-from", imported, "--freeze-layers", "1", "--train-tsv",
                          str(tmp_path / "train.tsv"), "--epochs", "2", "--batch-size", "16", "--no-export",
                          "--out", str(tmp_path / "runs"), "--name", "c", "--verbose", "0"])  # fmt: skip
    assert 0 <= metrics["accuracy"] <= 1
    tuned = RunDirectory(tmp_path / "runs" / "c").load().model
    assert tuned.pooling == "pooler"  # BERT's pooled output by default for a backbone with a pooler
    before, after = loaded.model.backbone, tuned.backbone
    for frozen in (before.embedding, before.encoder.transformer_layers[0]):
        twin = after.embedding if frozen is before.embedding else after.encoder.transformer_layers[0]
        for mine, theirs in zip(frozen.get_weights(), twin.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    changed = [not np.array_equal(a, b) for a, b in zip(before.encoder.transformer_layers[1].get_weights(),
                                                        after.encoder.transformer_layers[1].get_weights())]  # fmt: skip
    assert any(changed)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_type": "t5"}, "supported: \\['bert', 'gpt2', 'marian'\\]"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key' is not supported"),
        ({"hidden_act": "mish"}, "hidden_act='mish' is not supported"),
        ({"hidden_size": 30}, "hidden_size=30 is not divisible by num_attention_heads=4"),
        ({"is_decoder": True}, "is_decoder=True is not supported"),
    ],
)
def test_a_config_it_cannot_compute_is_refused_naming_the_field(bert, tmp_path, changes, message):
    from keras_transformer.pretrained import CheckpointError, import_checkpoint

    path, _ = bert
    directory = tmp_path / "checkpoint"
    shutil.copytree(path, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(str(directory), str(tmp_path / "runs"), "x")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage", ["no vocabulary", "no [MASK]", "truncated weights", "wrong shape"])
def test_missing_or_corrupt_files_are_one_line_and_write_nothing(bert, tmp_path, capsys, damage):
    from keras_transformer.pretrained.__main__ import cli

    path, _ = bert
    directory = tmp_path / "checkpoint"
    shutil.copytree(path, directory)
    vocabulary = directory / "vocab.txt"
    if damage == "no vocabulary":
        vocabulary.unlink()
    elif damage == "no [MASK]":
        vocabulary.write_text(vocabulary.read_text().replace("[MASK]\n", "[MASKED]\n"))
    elif damage == "truncated weights":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    assert cli([str(directory), "--out", str(tmp_path / "runs"), "--name", "x"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("kt-import: error:") or error.startswith("python -m keras_transformer.pretrained: error:")
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert not (tmp_path / "runs" / "x").exists()


@pytest.fixture(scope="module")
def tuned(imported, tmp_path_factory):
    """A classifier and a tagger fine-tuned from the imported BERT (one epoch each): `{family: run path}`."""
    import train

    directory = tmp_path_factory.mktemp("tuned")
    rng = np.random.default_rng(1)
    classes, blocks = [], []
    for _ in range(120):
        label = int(rng.integers(0, 2))
        choices = ["cat", "dog", "mat"] if label else ["hello", "world", "naive"]
        words = list(rng.choice(choices, size=rng.integers(2, 8)))
        classes.append(f"{' '.join(words)}\t{'yes' if label else 'no'}\n")
        blocks.append("\n".join(f"{w}\t{'N' if w in ('cat', 'dog', 'mat') else 'X'}" for w in words + ["sat"]))
    (directory / "train.tsv").write_text("".join(classes))
    (directory / "train.conll").write_text("\n\n".join(blocks) + "\n")
    common = ["--init-from", imported, "--epochs", "1", "--batch-size", "16", "--no-export", "--out",
              str(directory), "--verbose", "0"]  # fmt: skip
    train.main(["--task", "classify", "--train-tsv", str(directory / "train.tsv"), "--name", "classify", *common])
    train.main(["--task", "tag", "--train-conll", str(directory / "train.conll"), "--name", "tag", *common])
    return {family: str(directory / family) for family in ("classify", "tag")}


@pytest.mark.slow
def test_text_tflite_of_a_bert_classifier_and_tagger_gives_keras_labels(tuned, tmp_path):
    import tensorflow as tf
    import tensorflow_text

    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    from export import export_run
    from export.family_module import FamilyModule
    from export.flatbuffer import operators
    from export.run import Run
    from export.verify_families import verify_text

    rng = np.random.default_rng(2)
    words = [w.removeprefix("##") for w in WORDS] + ["Cat", "DOG", "Naïve", "CAFÉ", "don't", "e-mail", "中国", "x!"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 10))) for _ in range(200)] + ["", "   "]
    for family, output in (("classify", "label"), ("tag", "tags")):
        run = Run(tuned[family])
        written = export_run(tuned[family], ["tflite_text", "tflite_text_dynamic_int8"], out=str(tmp_path / family),
                             log=None)  # fmt: skip
        expected = FamilyModule(run, text=True).__getattribute__(f"{family}_text")(tf.constant(texts))[output].numpy()
        for variant, path in written.items():
            with open(path, "rb") as f:
                assert not [op for op in operators(f.read()) if op.startswith("Flex")]
            interpreter = InterpreterWithCustomOps(
                custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS, model_path=path
            )
            got = interpreter.get_signature_runner(f"{family}_text")(text=np.array(texts))[output]
            agreement = np.mean(np.all(np.reshape(got == expected, (len(texts), -1)), axis=1))
            print(f"{family} {variant}: {agreement:.2%} of texts as the run's tokenizer and model label them")
            assert agreement >= (1.0 if variant == "tflite_text" else 0.9), (family, variant, agreement)
        rows = {row["artifact"]: row for row in verify_text(run, str(tmp_path / family), count=100, timed_calls=3)}
        assert set(rows) == {"tflite_text", "tflite_text_dynamic_int8"}, rows
        assert rows["tflite_text"]["agreement"] == 1.0 and rows["tflite_text_dynamic_int8"]["agreement"] >= 0.9, rows


def make_classifier_checkpoint(directory, labels=("negative", "neutral", "positive")):
    """A tiny `BertForSequenceClassification` checkpoint (every parameter perturbed) with `id2label`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    make_bert_checkpoint(directory, pooler=True, head=False)  # the vocabulary and tokenizer files
    config = BertConfig.from_pretrained(directory)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    torch.manual_seed(1)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def sequence_classifier(tmp_path_factory):
    """`(checkpoint path, transformers model, imported classify run path)`."""
    from keras_transformer.pretrained import import_checkpoint

    path = tmp_path_factory.mktemp("bert-sst") / "bert-sst"
    model = make_classifier_checkpoint(str(path))
    return path, model, import_checkpoint(str(path), str(tmp_path_factory.mktemp("runs")), "sst", 32)


def test_a_sequence_classification_checkpoint_imports_as_a_classify_run_with_its_logits(sequence_classifier, tmp_path,
                                                                                      capsys):  # fmt: skip
    import torch
    from transformers import BertTokenizer

    from keras_transformer.data import families
    from keras_transformer.pretrained.__main__ import cli
    from keras_transformer.run_directory import RunDirectory

    path, hf, imported = sequence_classifier
    run = RunDirectory(imported).load()
    assert run.family == "classify" and run.labels == ["negative", "neutral", "positive"]
    assert run.config["task"]["head"] == "imported" and run.model.pooling == "pooler"
    texts = sentences(300, seed=3)  # padded batch, over-long texts cut at 32 pieces as transformers cuts them
    ours = np.asarray(run.model(families.encoder_inputs(run.source_tokenizer, texts, 32)))
    encoded = BertTokenizer.from_pretrained(str(path))(texts, padding=True, truncation=True, max_length=32,
                                                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        theirs = hf(**encoded).logits.numpy()
    assert _relative(ours, theirs) < 1e-4
    assert np.array_equal(ours.argmax(-1), theirs.argmax(-1))
    # --labels renames the classes; a count other than the head's is one line, and writes nothing.
    assert cli([str(path), "--out", str(tmp_path), "--name", "renamed", "--labels", "neg,mid,pos"]) == 0
    assert RunDirectory(tmp_path / "renamed").load().labels == ["neg", "mid", "pos"]
    assert "Fine-tune:" in capsys.readouterr().out
    assert cli([str(path), "--out", str(tmp_path), "--name", "two", "--labels", "neg,pos"]) == 2
    error = capsys.readouterr().err.strip()
    assert "classifier has 3 labels (negative, neutral, positive); 2 label names were given" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "two").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--task", "classify"], "no sequence-classification head: name the classes the new head learns"),
        (["--labels", "a,b"], "a pretrain-mlm run has none"),
        (["--task", "lm"], "a bert checkpoint imports as a pretrain-mlm, classify or tag run"),
        (["--task", "classify", "--labels", "a,a"], "the labels name 'a' twice"),
        (["--task", "classify", "--labels", "a"], "a classifier needs at least 2 labels"),
    ],
)
def test_a_new_head_needs_its_labels_named(bert, tmp_path, capsys, arguments, message):
    from keras_transformer.pretrained.__main__ import cli

    path, _ = bert
    assert cli([str(path), "--out", str(tmp_path), "--name", "x", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_classify_and_tag_runs_with_new_heads_train_and_keep_the_head_of_a_run_whose_labels_cover_the_data(
    bert, sequence_classifier, tmp_path, capsys
):
    import train
    from keras_transformer.pretrained.__main__ import cli
    from keras_transformer.run_directory import RunDirectory

    path, _ = bert
    assert cli([str(path), "--out", str(tmp_path), "--name", "tagger", "--task", "tag", "--labels", "N,X",
                "--max-length", "24"]) == 0  # fmt: skip
    assert "whose head is new: train it" in capsys.readouterr().out
    tagger = RunDirectory(tmp_path / "tagger").load()
    assert tagger.family == "tag" and tagger.labels == ["[PAD]", "N", "X"] and tagger.config["task"]["head"] == "new"
    blocks = ["cat\tN\nsat\tX", "dog\tN\nhello\tX\nmat\tN"] * 40
    (tmp_path / "train.conll").write_text("\n\n".join(blocks) + "\n")
    common = ["--epochs", "1", "--batch-size", "16", "--no-export", "--out", str(tmp_path), "--verbose", "0"]
    train.main(["--task", "tag", "--init-from", str(tmp_path / "tagger"), "--train-conll", str(tmp_path / "train.conll"),
                "--name", "tagged", *common])  # fmt: skip
    assert "head and labels of the pre-trained run kept" in capsys.readouterr().out
    tagged = RunDirectory(tmp_path / "tagged").load()
    assert tagged.labels == ["[PAD]", "N", "X"] and tagged.config["task"]["imported_from"] == str(path.resolve())

    # An imported classifier fine-tuned on data with two of its three labels keeps its head and labels; at the
    # imported-checkpoint learning rate (5e-5, Adam) ten updates move each weight by about 5e-4 at most.
    _, _, imported = sequence_classifier
    rng = np.random.default_rng(5)
    lines = [f"{' '.join(rng.choice(['cat', 'dog', 'hello', 'world'], size=4))}\t{rng.choice(['negative', 'positive'])}\n"
             for _ in range(160)]  # fmt: skip
    (tmp_path / "train.tsv").write_text("".join(lines))
    train.main(["--task", "classify", "--init-from", imported, "--train-tsv", str(tmp_path / "train.tsv"),
                "--name", "tuned", *common])  # fmt: skip
    before, after = RunDirectory(imported).load(), RunDirectory(tmp_path / "tuned").load()
    assert after.labels == ["negative", "neutral", "positive"]
    for mine, theirs in zip(before.model.classifier_head.get_weights(), after.model.classifier_head.get_weights()):
        assert 0 < np.abs(mine - theirs).max() < 2e-3


@pytest.mark.slow
def test_pretraining_goes_on_from_an_imported_bert_with_frozen_layers(bert, imported, loaded, sequence_classifier,
                                                                     tmp_path, capsys):  # fmt: skip
    import train
    from keras_transformer.run_directory import RunDirectory

    lines = ["the cat sat on the mat", "hello world", "the dog runs", "naive cafe", "don't e-mail me"] * 40
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    common = ["--train-text", str(tmp_path / "text.txt"), "--epochs", "1", "--batch-size", "16", "--out",
              str(tmp_path), "--verbose", "0"]  # fmt: skip
    train.main(["--task", "pretrain-mlm", "--init-from", imported, "--freeze-layers", "1", "--name", "more", *common])
    more = RunDirectory(tmp_path / "more").load()
    assert more.family == "pretrain-mlm" and more.source_tokenizer.kind == "bert"
    assert more.config["task"]["mask_id"] == loaded.config["task"]["mask_id"]  # BERT's [MASK], not a new id
    before, after = loaded.model.backbone, more.model.backbone
    for mine, theirs in zip(before.encoder.transformer_layers[0].get_weights(),
                            after.encoder.transformer_layers[0].get_weights()):  # fmt: skip
        np.testing.assert_array_equal(mine, theirs)
    assert any(not np.array_equal(a, b) for a, b in zip(before.encoder.transformer_layers[1].get_weights(),
                                                        after.encoder.transformer_layers[1].get_weights()))  # fmt: skip
    with pytest.raises(SystemExit):  # init_from brings its tokenizer: no --vocab-size (the parser's one line)
        train.main(["--task", "pretrain-mlm", "--init-from", str(tmp_path / "more"), "--vocab-size", "100",
                    "--name", "bad", *common])  # fmt: skip
    capsys.readouterr()
    _, _, classifier = sequence_classifier
    assert train.cli(["--task", "pretrain-mlm", "--init-from", classifier, "--name", "bad", *common]) == 2
    error = capsys.readouterr().err.strip()
    assert "a classify run is not a masked language model" in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "bad").exists()
