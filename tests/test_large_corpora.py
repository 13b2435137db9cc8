"""What scales to large corpora: tokenizers trained on a sample, BLEU on a subset, gradient accumulation."""

import collections
import json

import pytest

import train
from keras_transformer.data.tokenizers import sample_lines
from tests.conftest import MODEL


def test_sample_lines_is_a_seeded_uniform_reservoir():
    lines = (f"line {i}" for i in range(1000))  # read once, as a streamed file is
    sample, count = sample_lines(lines, 100, seed=3)
    assert count == 1000 and len(sample) == 100 == len(set(sample))
    assert sample == sample_lines([f"line {i}" for i in range(1000)], 100, seed=3)[0]
    assert sample != sample_lines([f"line {i}" for i in range(1000)], 100, seed=4)[0]
    assert sample_lines(["a", "b", "c"], 5) == (["a", "b", "c"], 3)  # fewer lines: all, in order
    # Each of 10 lines is drawn by a sample of 1 about as often as any other.
    counts = collections.Counter(sample_lines(range(10), 1, seed=seed)[0][0] for seed in range(4000))
    assert set(counts) == set(range(10)) and max(counts.values()) < 1.25 * min(counts.values())
    with pytest.raises(ValueError, match="tokenizer_sample"):
        sample_lines(["a"], 0)


@pytest.mark.slow
def test_tokenizer_sample_bleu_subset_and_accumulation_in_one_text_run(corpus, tmp_path, capsys):
    directory, _, _ = corpus
    train.main(
        MODEL + [
            "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
            "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "wordpiece", "--vocab-size", "120",
            "--tokenizer-sample", "300", "--val-bleu-sentences", "25", "--accumulate-steps", "2",
            "--epochs", "1", "--out", str(tmp_path), "--name", "run", "--no-export", "--verbose", "2",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    # One tokenizer per side, each on 300 of its 1000 lines.
    assert out.count("trained on 300 of 1,000 lines (at most 300 per side)") == 2
    assert "BLEU each epoch on 25 of them" in out and "greedy, 25 sentences" in out
    run = tmp_path / "run"
    assert len((run / "hypotheses.txt").read_text(encoding="utf-8").splitlines()) == 200  # the final: all
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["tokenizer_sample"] == 300 and config["training"]["accumulate_steps"] == 2
    import keras

    assert keras.saving.load_model(run / "model.keras").optimizer.gradient_accumulation_steps == 2


@pytest.mark.slow
def test_shards_stream_for_steps_per_epoch(corpus, tmp_path, capsys):
    """Globs of gzip and plain shards, `--steps-per-epoch`, a bounded shuffle buffer, misaligned shards refused."""
    import gzip

    _, sources, targets = corpus
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard in range(3):
        part = slice(shard * 300, (shard + 1) * 300)
        (shards / f"train.{shard}.src.gz").write_bytes(gzip.compress(("\n".join(sources[part]) + "\n").encode()))
        (shards / f"train.{shard}.tgt").write_text("\n".join(targets[part]) + "\n")
    flags = MODEL + [
        "--train-src", str(shards / "train.*.src.gz"), "--train-tgt", str(shards / "train.*.tgt"),
        "--tokenizer", "wordpiece", "--vocab-size", "120", "--steps-per-epoch", "5", "--shuffle-buffer", "64",
        "--out", str(tmp_path), "--name", "run", "--no-export", "--no-tensorboard",
    ]  # fmt: skip
    train.main(flags + ["--epochs", "2"])
    out = capsys.readouterr().out
    assert "900 pairs kept of 900 lines" in out and "parallel text, 900 training" in out
    import keras

    run = tmp_path / "run"
    assert int(keras.saving.load_model(run / "model.keras").optimizer.iterations) == 10  # 2 epochs of 5 steps
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["steps_per_epoch"] == 5 and config["training"]["shuffle_buffer"] == 64

    # A misaligned shard: one clear error before anything is written.
    (shards / "train.1.tgt").write_text("\n".join(targets[300:599]) + "\n")
    assert train.cli(flags[:-4] + ["--out", str(tmp_path / "other"), "--epochs", "1", "--no-export"]) == 2
    err = capsys.readouterr().err
    assert "not aligned: " in err and "train.1.src.gz has 300 lines" in err and "train.1.tgt has 299" in err
    assert not (tmp_path / "other" / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--task", "tag", "--tokenizer-sample", "10"], "--tokenizer-sample: the tag task trains no subword tokenizer"),
        (["--tokenizer-sample", "10"], "--tokenizer-sample: the translate task trains no subword tokenizer"),
        (["--tokenizer-sample", "0"], "--tokenizer-sample must be a positive integer"),
        (["--val-bleu-sentences", "0"], "--val-bleu-sentences must be a positive integer"),
        (["--accumulate-steps", "0"], "--accumulate-steps must be a positive integer"),
        (["--task", "classify", "--val-bleu-sentences", "5"], "--task classify does not take --val-bleu-sentences"),
        (["--shuffle-buffer", "0"], "--shuffle-buffer must be a positive integer"),
        (["--steps-per-epoch", "-1"], "--steps-per-epoch must be a positive integer"),
    ],
)
def test_bad_scale_flags_are_one_clear_error(flags, message, tmp_path, capsys):
    try:
        code = train.cli(flags + ["--out", str(tmp_path / "runs"), "--no-export"])
    except SystemExit as exit:  # argparse's usage error
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written
