"""Values nobody checked: decoding settings where they enter, strings for lists, inputs of no piece, lines.

Each class of input is tried at every door it can come through: `generate`,
the `Translator`, the commands' flags, the export options and standard input.
"""

import io
import math

import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer import commands, translate
from keras_transformer.checks import check_finite
from keras_transformer.translator import Translator

NOT_FINITE = [math.nan, math.inf, -math.inf, float("nan")]
NOT_NUMBERS = ["0.6", None, True, [0.6]]


@pytest.fixture(scope="module")
def model():
    return kt.Transformer(40, 50, num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, max_sequence_length=8)


def test_finite_numbers_are_checked_once_for_every_setting():
    for value in (0, 0.6, -1.5, 2, np.float32(0.6)):
        check_finite(value, "length_penalty")
    for value in NOT_FINITE + NOT_NUMBERS:
        with pytest.raises(ValueError, match=r"`length_penalty` must be a finite number\. Received: length_penalty="):
            check_finite(value, "length_penalty")


def test_generate_refuses_settings_that_would_decode_nonsense(model):
    source = np.ones((2, 5), "int32")
    for value in NOT_FINITE + NOT_NUMBERS:
        with pytest.raises(ValueError, match="length_penalty"):
            model.generate(source, method="beam", beam_size=2, length_penalty=value)
    for value in (math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="temperature"):
            model.generate(source, method="sample", temperature=value)
    for value in (3.5, "4", True):
        with pytest.raises(ValueError, match="max_length"):
            model.generate(source, max_length=value)
    assert np.asarray(model.generate(source, max_length=np.int64(4))).shape == (2, 4)  # numpy integers are integers


class _Tokenizer:
    """Words split on whitespace; characters below U+0020 and zero-width spaces are no piece at all."""

    def tokenize(self, texts):
        import tensorflow as tf

        rows = []
        for text in texts.numpy():
            text = text.decode("utf-8")
            words = "".join(c for c in text if c >= " " and c not in "\u200b\u200c\u200d\ufeff").split()
            rows.append([4 + (sum(map(ord, word)) % 30) for word in words])
        return tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1, inner_shape=())

    def detokenize(self, ids):
        import tensorflow as tf

        ids = np.asarray(ids)
        return tf.constant([" ".join(f"w{i}" for i in row if i > 3) for row in ids])


@pytest.fixture(scope="module")
def translator(model):
    return Translator(model, _Tokenizer(), _Tokenizer(), beam_size=2)


def test_translator_checks_its_settings_at_construction_and_per_call(model, translator):
    for value in NOT_FINITE + NOT_NUMBERS:
        with pytest.raises(ValueError, match="length_penalty"):
            Translator(model, _Tokenizer(), _Tokenizer(), length_penalty=value)
        if value is not None:  # None per call: the translator's own
            with pytest.raises(ValueError, match="length_penalty"):
                translator.translate(["a b"], length_penalty=value)
    for value in ("yes", 1, None):
        with pytest.raises(ValueError, match="exact_stop"):
            Translator(model, _Tokenizer(), _Tokenizer(), exact_stop=value)


def test_a_string_is_one_sentence_and_other_items_are_refused(translator):
    sentence = "a man rides a bike"
    assert translator.translate(sentence) == translator.translate([sentence])[0]  # not one per character
    assert isinstance(translator.translate(sentence), str)
    assert translator.translate(sentence.encode()) == translator.translate(sentence)
    pairs = translator.translate(sentence, n_best=2)
    assert len(pairs) == 2 and all(isinstance(text, str) for text, _ in pairs)
    assert translator.translate(iter([sentence])) == [translator.translate(sentence)]
    for bad, match in (([sentence, 3], r"texts\[1\] is a int"), ([None], r"texts\[0\] is a NoneType"),
                       ([b"caf\xe9"], "not UTF-8")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            translator.translate(bad)


def test_input_of_no_piece_translates_to_nothing_as_empty_input_does(translator):
    texts = ["", "   ", "\x01\x02", "\u200b\u200b", "\x00", "a man", "\t\x0b\x0c"]
    out = translator.translate(texts)
    assert out[:5] + out[6:] == [""] * 6 and out[5] != ""
    calls = []
    translator.translate(texts, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]  # only the one sentence with pieces was decoded


def test_commands_refuse_numbers_that_are_not_finite(capsys):
    for text in ("nan", "inf", "-inf", "NaN", "1e999"):
        with pytest.raises(Exception, match="finite"):
            commands.finite_float(text)
        with pytest.raises(SystemExit) as exit:
            translate.main(["--model", "unused", f"--length-penalty={text}"])
        assert exit.value.code == 2 and "--length-penalty: must be a finite number" in capsys.readouterr().err
    from export.__main__ import parse_args
    from keras_transformer.train import parse_args as train_args

    for parse, flag in ((parse_args, "--length-penalty"), (train_args, "--label-smoothing"),
                        (train_args, "--learning-rate-scale"), (train_args, "--time-limit")):  # fmt: skip
        with pytest.raises(SystemExit):
            parse(["--model", "unused", flag, "nan"] if parse is parse_args else [flag, "nan"])
        assert "must be a finite number" in capsys.readouterr().err


def test_export_options_refuse_a_length_penalty_that_is_not_finite():
    from export import ExportError, ExportOptions

    for value in NOT_FINITE + ["0.6"]:
        with pytest.raises(ExportError, match="--length-penalty must be a finite number"):
            ExportOptions(length_penalty=value)
    assert ExportOptions(length_penalty=1).length_penalty == 1


def test_the_length_penalty_form_is_checked_where_it_enters(capsys):
    from export import ExportError, ExportOptions
    from export.__main__ import parse_args

    with pytest.raises(ExportError, match=r"--length-penalty-form must be one of \('gnmt', 'length'\)"):
        ExportOptions(length_penalty_form="wu")
    assert parse_args(["--model", "unused", "--length-penalty-form", "length"]).length_penalty_form == "length"
    for parse in (parse_args, translate.main):
        with pytest.raises(SystemExit):
            parse(["--model", "unused", "--length-penalty-form", "average"])
        assert "invalid choice: 'average'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="length_penalty_form"):
        kt.Translator(kt.Transformer.from_preset("tiny", source_vocabulary_size=12, target_vocabulary_size=12),
                      None, None, length_penalty_form="avg")  # fmt: skip


@pytest.mark.parametrize(
    "data, lines",
    [
        (b"one\rtwo\nthree\n", ["one\rtwo", "three"]),  # a lone CR stays inside its line
        (b"one\r\ntwo\r\n", ["one", "two"]),  # Windows line ends
        (b"a\x0cb\nc\x1cd\ne\xe2\x80\xa8f", ["a\x0cb", "c\x1cd", "e\u2028f"]),  # what str.splitlines would split
        (b"", []),
        (b"\n", [""]),
        (b"last line without newline", ["last line without newline"]),
    ],
)
def test_standard_input_has_one_line_per_newline_whatever_else_a_line_holds(data, lines, monkeypatch):
    class Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", Stdin())
    assert translate.read_stdin() == lines
