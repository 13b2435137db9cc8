"""A GPT-2 checkpoint made by transformers, imported: the same ids, logits and greedy continuations; fine-tuned."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.pretrained.test_bert import sentences

END_OF_TEXT = "<|endoftext|>"


def make_gpt2_checkpoint(directory, seed=0, **config):
    """A tiny GPT-2 checkpoint: a byte-level BPE learnt on made-up text, random weights (every parameter perturbed)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    os.makedirs(directory, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences(600, seed=5) * 2, vocab_size=400, min_frequency=2, special_tokens=[END_OF_TEXT])
    bpe.save_model(directory)
    with open(os.path.join(directory, "vocab.json"), encoding="utf-8") as f:
        vocabulary = json.load(f)
    eot = vocabulary[END_OF_TEXT]
    settings = dict(vocab_size=len(vocabulary), n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=eot,
                    eos_token_id=eot)  # fmt: skip
    settings.update(config)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**settings)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return model, eot


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2") / "gpt2-tiny"
    model, eot = make_gpt2_checkpoint(str(path))
    return path, model, eot


@pytest.fixture(scope="module")
def imported(gpt2, tmp_path_factory):
    from keras_transformer.pretrained import import_checkpoint

    path, _, _ = gpt2
    return import_checkpoint(str(path), str(tmp_path_factory.mktemp("runs")), "gpt2")


@pytest.fixture(scope="module")
def loaded(imported):
    from keras_transformer.run_directory import RunDirectory

    return RunDirectory(imported).load()


def test_tokenization_equals_gpt2_tokenizer_and_round_trips(gpt2, loaded):
    import tensorflow as tf
    from transformers import GPT2Tokenizer

    path, _, eot = gpt2
    texts = [text for text in sentences(1100, seed=9) if "\x00" not in text][:1000]  # see `Gpt2Tokenizer` on NUL
    texts[3:6] = [f"a{END_OF_TEXT}b", "It's 'quoted', you're   spaced\tout\n", "x" * 300]
    tokenizer = loaded.source_tokenizer
    theirs = GPT2Tokenizer.from_pretrained(str(path))(texts)["input_ids"]
    ours = tokenizer.tokenize(tf.constant(texts)).to_list()
    order = tokenizer.order
    assert [[int(order[i]) for i in row] for row in ours] == theirs
    assert any(eot in row for row in theirs)
    clean = [t for t in texts if END_OF_TEXT not in t]
    padded = tokenizer.tokenize(tf.constant(clean)).to_tensor(0)
    assert [t.decode() for t in tokenizer.detokenize(padded).numpy()] == clean  # lossless


def test_logits_and_greedy_continuations_equal_transformers(gpt2, loaded):
    import torch

    _, hf, eot = gpt2
    model, order = loaded.model, loaded.source_tokenizer.order
    ours_of = {int(g): i for i, g in enumerate(order) if i > 3}
    rng = np.random.default_rng(0)
    lengths = [12, 7, 3]
    prompts = [[int(i) for i in rng.choice([g for g in range(len(order) - 3) if g != eot], size=n)] for n in lengths]
    ids = np.zeros((3, 13), "int32")  # this project's: start, then the prompt, 0-padded
    ids[:, 0] = 2
    for row, prompt in enumerate(prompts):
        ids[row, 1 : 1 + len(prompt)] = [ours_of[g] for g in prompt]
    logits = np.asarray(model(ids))
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            theirs = hf(torch.tensor([[eot] + prompt])).logits[0].numpy()
        mine = logits[row, : len(prompt) + 1][:, 2:]  # columns from the start id on: GPT-2 ids `order[2:]`
        relative = np.max(np.abs(mine - theirs[:, order[2:]])) / np.max(np.abs(theirs))
        assert relative < 1e-4, relative
        assert np.argmax(logits[row, : len(prompt) + 1], -1).min() > 1  # the unknown id is never the best
    generated = np.asarray(model.generate(ids[:, 1:], max_length=40))
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([[eot] + prompt]), max_length=41, do_sample=False, eos_token_id=eot,
                                 pad_token_id=eot)[0, 1:].tolist()  # fmt: skip
        mine = [int(order[i]) for i in generated[row] if i != 0]
        assert mine == theirs[: len(mine)] and (len(mine) == len(theirs) or mine[-1] == eot), (row, mine, theirs)


@pytest.mark.slow
def test_an_imported_gpt2_fine_tunes_with_frozen_layers_and_exports_to_tflite(imported, loaded, tmp_path):
    import tensorflow as tf

    import train
    from export import export_run
    from export.interpreter import interpreter
    from keras_transformer.run_directory import RunDirectory

    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(["the cat", "sat on", "the mat", "and the dog"], size=4)) for _ in range(200)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    train.main(["--task", "lm", "--init-from", imported, "--freeze-layers", "1", "--train-text",
                str(tmp_path / "train.txt"), "--max-length", "24", "--epochs", "2", "--batch-size", "16",
                "--no-export", "--out", str(tmp_path / "runs"), "--name", "tuned", "--verbose", "0"])  # fmt: skip
    tuned = RunDirectory(tmp_path / "runs" / "tuned").load()
    before, after = loaded.model, tuned.model
    for mine, theirs in zip(before.embedding.get_weights() + before.decoder.transformer_layers[0].get_weights(),
                            after.embedding.get_weights() + after.decoder.transformer_layers[0].get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert any(not np.array_equal(a, b) for a, b in zip(before.decoder.transformer_layers[1].get_weights(),
                                                        after.decoder.transformer_layers[1].get_weights()))  # fmt: skip
    assert tuned.source_tokenizer.fingerprint() == loaded.source_tokenizer.fingerprint()
    written = export_run(str(tmp_path / "runs" / "tuned"), ["tflite", "saved_model"], log=lambda *_: None)
    prompts = tuned.source_tokenizer.tokenize(tf.constant(["the cat", "and"])).to_tensor(0).numpy().astype("int32")
    length = after.max_sequence_length  # the checkpoint's: exported files take prompts of this length
    expected = np.asarray(after.generate(prompts, max_length=length))
    runner = interpreter(written["tflite"]).get_signature_runner("generate")
    padded = np.pad(prompts, [(0, 0), (0, length - prompts.shape[1])])
    np.testing.assert_array_equal(runner(prompt_ids=padded)["token_ids"], expected)
    saved = tf.saved_model.load(written["saved_model"])
    text = saved.signatures["generate_text"](text=tf.constant(["the cat"]))["text"].numpy()[0].decode()
    assert text.startswith("the cat")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True is not supported"),
        ({"activation_function": "mish"}, "activation_function='mish' is not supported"),
        ({"n_embd": 30}, "n_embd=30 is not divisible by n_head=4"),
        ({"vocab_size": 999}, "vocab.json has \\d+ pieces; config.json's vocab_size is 999"),
    ],
)
def test_a_config_it_cannot_compute_is_refused_naming_the_field(gpt2, tmp_path, changes, message):
    from keras_transformer.pretrained import CheckpointError, import_checkpoint

    path, _, _ = gpt2
    directory = tmp_path / "checkpoint"
    shutil.copytree(path, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(str(directory), str(tmp_path / "runs"), "x")
    assert not (tmp_path / "runs").exists()


def test_missing_merges_are_one_line_and_write_nothing(gpt2, tmp_path, capsys):
    from keras_transformer.pretrained.__main__ import cli

    path, _, _ = gpt2
    directory = tmp_path / "checkpoint"
    shutil.copytree(path, directory)
    (directory / "merges.txt").unlink()
    assert cli([str(directory), "--out", str(tmp_path / "runs"), "--name", "x"]) == 2
    error = capsys.readouterr().err.strip()
    assert "merges.txt is missing" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "runs" / "x").exists()
