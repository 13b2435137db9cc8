"""Text in, text out TFLite: tokenizer, decoding loop and detokenizer in one file."""

import os

import numpy as np
import pytest

from tests.models.conftest import make_model

pytestmark = pytest.mark.slow


def text_path(run, variant="tflite_text"):
    from export.tflite_text import VARIANTS

    return str(run / "export" / VARIANTS[variant])


def translate(path, texts, signature="translate"):
    from export.interpreter import interpreter

    runner = interpreter(path).get_signature_runner(signature)
    outputs = runner(text=np.array([t.encode("utf-8") for t in texts], dtype=object))["translation"]
    return [t.decode("utf-8") for t in outputs]


@pytest.fixture(scope="module")
def texts(sources):
    sentences, _ = sources  # short ones and one over the maximum length
    # The last two: control characters and zero-width spaces (no piece, or unknown ones, by tokenizer)
    return sentences[:6] + ["", "   "] + sentences[6:] + ["\x01\x02", "\u200b\u200b"]


def test_only_builtin_and_tensorflow_text_ops(run):
    from export.flatbuffer import operators
    from export.interpreter import interpreter
    from export.tflite_text import TFTEXT_OPS

    with open(text_path(run), "rb") as f:
        custom = operators(f.read(), custom_only=True)
    assert custom and all(name.startswith("TFText>") or name in TFTEXT_OPS for name in custom), custom
    assert set(interpreter(text_path(run)).get_signature_list()) == {"translate", "translate_beam"}


def test_translations_equal_the_keras_translator(run, exported, texts):
    from keras_transformer.translator import Translator

    greedy = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer, beam_size=1)
    beam = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer)
    expected = greedy.translate(texts)
    assert translate(text_path(run), texts) == expected
    assert translate(text_path(run), texts[:1]) == expected[:1]  # batch of one
    assert translate(text_path(run), texts[:4], "translate_beam") == beam.translate(texts[:4])
    assert expected[6:8] == ["", ""] and all(expected[:6])


def test_dynamic_int8_text_variant_is_smaller_and_mostly_equal(run, texts, tmp_path):
    from export import export_run

    path = export_run(str(run), ["tflite_text_dynamic_int8"], out=str(tmp_path), log=None)["tflite_text_dynamic_int8"]
    float32, int8 = translate(text_path(run), texts), translate(path, texts)
    # Measured: 99% of 200 test-model sentences equal (whole sentences, stricter than tokens).
    assert np.mean([a == b for a, b in zip(float32, int8)]) >= 0.6
    assert os.path.getsize(path) < os.path.getsize(text_path(run))


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_in_graph_tokenizer_and_detokenizer_equal_the_run_tokenizer(corpus, kind):
    import tensorflow as tf

    from export.tflite_text import detokenize_in_graph, in_graph_tokenizer, surface_strings
    from keras_transformer.data.tokenizers import train_tokenizer

    _, sources, targets = corpus
    tokenizer = train_tokenizer(kind, sources[:400] + targets[:400], 90)
    texts = sources[1000:1050] + targets[1000:1050] + ["", "  Two   spaces  ", "unseen Ωmega words"]
    expected = tokenizer.tokenize(tf.constant(texts))
    assert in_graph_tokenizer(tokenizer)(tf.constant(texts)).to_list() == expected.to_list()
    # Generated rows: pieces, an end token, then anything (ignored); start/unknown ids are dropped.
    ids = expected.to_tensor(0, shape=[len(texts), 40]).numpy()
    ids = np.concatenate([np.full((len(texts), 1), 2), ids, np.full((len(texts), 1), 3), ids[:, :5]], 1)
    ids[::7, 3] = 1
    detokenized = detokenize_in_graph(surface_strings(tokenizer), tf.constant(ids, tf.int32)).numpy()
    assert detokenized.tolist() == tokenizer.detokenize(ids).numpy().tolist()


def test_sentencepiece_text_model_converts_and_equals_keras(corpus):
    """A SentencePiece run's text variant (an untrained model: equality is what counts)."""
    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    import tensorflow_text

    from export.converter import convert
    from export.tflite_text import SIGNATURES, TextTranslationModule
    from keras_transformer.data.tokenizers import train_tokenizer
    from keras_transformer.translator import Translator

    _, sources, targets = corpus
    tokenizer = train_tokenizer("sentencepiece", sources[:400] + targets[:400], 90)
    model = make_model(
        source_vocabulary_size=90, target_vocabulary_size=90, max_sequence_length=12, num_layers=1, dropout=0.0
    )
    flatbuffer = convert(TextTranslationModule(model, tokenizer, tokenizer), signatures=SIGNATURES[:1], allow_custom_ops=True)
    runner = InterpreterWithCustomOps(
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS, model_content=flatbuffer
    ).get_signature_runner("translate")
    texts = sources[1000:1006] + [""]
    outputs = runner(text=np.array([t.encode() for t in texts], dtype=object))["translation"]
    assert [t.decode("utf-8") for t in outputs] == Translator(model, tokenizer, tokenizer, beam_size=1).translate(texts)

