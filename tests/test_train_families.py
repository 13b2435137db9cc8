"""train.py --task classify|tag|lm|pretrain-mlm: built-in data, files, fine-tuning, bad flags."""

import json

import pytest

from tests.conftest import FAMILY_MODEL

pytestmark = pytest.mark.slow


def evaluation(path):
    return json.loads((path / "evaluation.json").read_text())


def test_each_family_learns_its_built_in_task(family_runs):
    assert evaluation(family_runs / "classify")["accuracy"] >= 0.95
    assert evaluation(family_runs / "tag")["token_accuracy"] >= 0.95
    lm = evaluation(family_runs / "lm")
    # Perplexity far below the 177-word vocabulary's; many samples from the start token are whole
    # sentences of the language (an untrained model's never are; nucleus sampling cuts the tail).
    assert lm["perplexity"] < 30 and lm["grammatical_top_p"] >= 0.25 and lm["grammatical"] > 0.1
    assert len(lm["samples"]) == len(lm["samples_top_p"]) == 5
    config = json.loads((family_runs / "tag" / "config.json").read_text())
    assert config["task"]["family"] == "tag" and config["task"]["labels"][0] == "[PAD]"


def test_pretrained_encoder_beats_random_initialisation(tmp_path):
    """Masked-LM pre-training on plain text, then 32 labelled sentences: the pre-trained
    encoder has learned which sentiment words go together, so it generalises to words the
    labelled set never showed; a random one cannot."""
    import train

    tiny = ["--max-length", "24", "--verbose", "0", "--out", str(tmp_path)]
    train.main(tiny + ["--task", "pretrain-mlm", "--train-examples", "12000", "--epochs", "4",
                       "--name", "mlm"])  # fmt: skip
    assert evaluation(tmp_path / "mlm")["masked_token_accuracy"] > 0.15
    small = tiny + ["--task", "classify", "--train-examples", "32", "--epochs", "30", "--batch-size", "16",
                    "--no-export"]  # fmt: skip
    random = train.main(small + ["--name", "random"])["accuracy"]
    pretrained = train.main(small + ["--name", "pretrained", "--init-from", str(tmp_path / "mlm")])["accuracy"]
    frozen = train.main(
        small + ["--name", "frozen", "--init-from", str(tmp_path / "mlm"), "--freeze-layers", "1"]
    )  # fmt: skip
    assert pretrained >= random + 0.1 and pretrained >= 0.9, (random, pretrained)
    assert frozen["accuracy"] > random
    config = json.loads((tmp_path / "pretrained" / "config.json").read_text())
    assert config["task"]["init_from"] == str(tmp_path / "mlm")


def test_file_inputs(tmp_path):
    import train
    from keras_transformer.data import SyntheticLanguage

    language = SyntheticLanguage()
    words, tags, sentiments = language.sample(300, seed=7)
    texts = [" ".join(w) for w in words]
    (tmp_path / "train.tsv").write_text("".join(f"{t}\t{'good' if s else 'bad'}\n" for t, s in zip(texts, sentiments)))
    blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) for ws, ts in zip(words, tags)]
    (tmp_path / "train.conll").write_text("\n\n".join(blocks) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(texts) + "\n")
    common = FAMILY_MODEL + ["--epochs", "1", "--no-export", "--out", str(tmp_path / "runs")]
    classify = train.main(common + ["--task", "classify", "--train-tsv", str(tmp_path / "train.tsv"),
                                    "--tokenizer", "wordpiece", "--vocab-size", "300", "--name", "c"])  # fmt: skip
    assert 0 <= classify["accuracy"] <= 1
    labels = json.loads((tmp_path / "runs" / "c" / "config.json").read_text())["task"]["labels"]
    assert labels == ["bad", "good"]
    tag = train.main(common + ["--task", "tag", "--train-conll", str(tmp_path / "train.conll"), "--name", "t"])
    assert 0 <= tag["token_accuracy"] <= 1
    lm = train.main(common + ["--task", "lm", "--train-text", str(tmp_path / "train.txt"),
                              "--tokenizer", "wordpiece", "--vocab-size", "300", "--name", "l"])  # fmt: skip
    assert lm["perplexity"] > 1 and "grammatical" not in lm


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--task", "lm", "--train-tsv", "x.tsv"], "does not take --train-tsv"),
        (["--task", "classify", "--train-conll", "x.conll"], "does not take --train-conll"),
        (["--task", "translate", "--init-from", "runs/x"], "--init-from continues a translation run on parallel text"),
        (["--task", "pretrain-mlm", "--freeze-layers", "1"], "needs --init-from"),
        (["--task", "pretrain-mlm", "--init-from", "runs/x", "--vocab-size", "100"], "drop --vocab-size"),
        (["--task", "classify", "--freeze-layers", "1"], "needs --init-from"),
        (["--task", "lm", "--freeze-layers", "1"], "needs --init-from"),
    ],
)
def test_bad_flags(flags, message, capsys):
    import train

    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert message in capsys.readouterr().err


def test_bad_init_from_and_export_format(family_runs, tmp_path):
    import train

    common = FAMILY_MODEL + ["--out", str(tmp_path), "--epochs", "1", "--train-examples", "50"]
    with pytest.raises(ValueError, match="no encoder"):
        train.main(common + ["--task", "classify", "--init-from", str(family_runs / "lm"), "--name", "a"])
    with pytest.raises(ValueError, match="unknown format"):
        train.main(common + ["--task", "tag", "--export", "tflite_int8", "--name", "b"])
    (tmp_path / "one.tsv").write_text("a single line\tpos\n")
    with pytest.raises(ValueError, match="too few usable examples"):
        train.main(common + ["--task", "classify", "--train-tsv", str(tmp_path / "one.tsv"), "--name", "c"])
