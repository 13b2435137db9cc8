"""SavedModel export: text, token and logit signatures equal the Keras model."""

import os

import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.translator import Translator
from tests.test_case import to_numpy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    return tf.saved_model.load(str(run / "export" / "saved_model" / "1"))


def test_signatures_are_listed(loaded):
    assert {"serving_default", "translate", "translate_beam", "generate", "beam_search", "logits"} <= set(
        loaded.signatures
    )


def test_text_signatures_equal_the_keras_translator(loaded, exported, sources):
    import tensorflow as tf

    texts, _ = sources
    texts = texts[:6] + ["", "   "] + texts[6:]
    greedy = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer, beam_size=1)
    beam = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer)
    for signature, translator in (("translate", greedy), ("translate_beam", beam)):
        outputs = loaded.signatures[signature](text=tf.constant(texts))["translation"].numpy()
        assert [t.decode("utf-8") for t in outputs] == translator.translate(texts), signature
    # One default decoding: serving_default is the beam search the Python API and the CLI use.
    one = loaded.signatures["serving_default"](text=tf.constant(texts[:3]))["translation"].numpy()
    assert [t.decode("utf-8") for t in one] == kt.Translator(exported.model, exported.source_tokenizer,
                                                             exported.target_tokenizer).translate(texts[:3])  # fmt: skip
    # Control characters and zero-width spaces: what the Translator gives, and "" wherever the run's
    # tokenizer makes no piece of them (as for blank input), in a batch with a real sentence.
    odd = ["", " ", "\x01\x02", "\u200b\u200b", "\x00", texts[0]]
    pieces = exported.source_tokenizer.tokenize(tf.constant(odd)).row_lengths().numpy()
    for signature, translator in (("translate", greedy), ("translate_beam", beam)):
        outputs = [t.decode("utf-8") for t in loaded.signatures[signature](text=tf.constant(odd))["translation"].numpy()]
        assert outputs == translator.translate(odd), signature
        assert all(output == "" for output, count in zip(outputs, pieces) if count == 0) and outputs[-1], signature


def test_the_beam_search_signature_uses_the_length_penalty_form_asked_for(exported, sources):
    import tensorflow as tf

    from export.translation_module import TranslationModule

    _, ids = sources
    model = exported.model
    scores = {}
    for form in ("gnmt", "length"):
        module = TranslationModule(model, beam_size=3, length_penalty=2.0, length_penalty_form=form)
        outputs = module.beam_search(tf.constant(ids[:4]))
        expected, scores[form] = model.generate(
            ids[:4], method="beam", beam_size=3, length_penalty=2.0, length_penalty_form=form
        )
        np.testing.assert_array_equal(outputs["token_ids"].numpy(), to_numpy(expected))
        np.testing.assert_allclose(outputs["scores"].numpy(), to_numpy(scores[form]), atol=1e-5)
    assert not np.allclose(to_numpy(scores["gnmt"]), to_numpy(scores["length"]))


def test_token_and_logit_signatures_equal_keras(loaded, exported, sources):
    import tensorflow as tf

    _, ids = sources
    model = exported.model
    for batch in (ids[:1], ids[:5], ids[:, :7]):  # any batch size, any length up to the maximum
        tokens = loaded.signatures["generate"](encoder_token_ids=tf.constant(batch))["token_ids"].numpy()
        np.testing.assert_array_equal(tokens, to_numpy(model.generate(batch)))
    decoder_ids = np.concatenate([np.full((len(ids), 1), 2, "int32"), tokens[:, :-1]], 1)
    logits = loaded.signatures["logits"](encoder_token_ids=tf.constant(ids), decoder_token_ids=tf.constant(decoder_ids))
    expected = to_numpy(model({"encoder_token_ids": ids, "decoder_token_ids": decoder_ids}))
    np.testing.assert_allclose(logits["logits"].numpy(), expected, atol=1e-4)


def test_over_long_token_input_is_refused(loaded):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="max_sequence_length"):
        loaded.signatures["generate"](encoder_token_ids=tf.ones((1, 30), tf.int32))


@pytest.mark.reliability
def test_ids_outside_the_vocabulary_are_refused(loaded, exported, sources):
    import tensorflow as tf

    _, ids = sources
    vocabulary = exported.model.source_vocabulary_size
    for bad in (-1, -78, -100, vocabulary, vocabulary + 1000):
        batch = ids[:2].copy()
        batch[1, 0] = bad
        for signature in ("generate", "beam_search"):
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"encoder_token_ids.*\[0, {vocabulary}\)"):
                loaded.signatures[signature](encoder_token_ids=tf.constant(batch))
    decoder_ids = np.full((1, 3), exported.model.target_vocabulary_size, "int32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="decoder_token_ids"):
        loaded.signatures["logits"](encoder_token_ids=tf.constant(ids[:1]), decoder_token_ids=tf.constant(decoder_ids))


def test_saved_model_versions_and_the_readme_rest_request(run, loaded, exported):
    import json
    import re

    import tensorflow as tf

    import export
    from export.saved_model import latest_version
    from export.serving import RequestError, predict

    assert os.path.isfile(run / "export" / "saved_model" / "1" / "saved_model.pb")
    # The exact request body the README shows, through TensorFlow Serving's row format.
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    body = json.loads(re.search(r"-d '(\{.*?\})'", readme).group(1))
    response = predict(loaded, body)
    assert list(response) == ["predictions"] and len(response["predictions"]) == len(body["instances"])
    assert all(isinstance(text, str) for text in response["predictions"])
    expected = kt.Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer)
    assert response["predictions"] == expected.translate(body["instances"])
    ids = predict(loaded, {"signature_name": "beam_search", "instances": [{"encoder_token_ids": [5, 6, 7]}]})
    assert sorted(ids["predictions"][0]) == ["scores", "token_ids"]
    with pytest.raises(RequestError, match="not found"):
        predict(loaded, {"signature_name": "nope", "instances": ["x"]})
    # Another version goes beside the first; loading takes the highest.
    out = run.parent / "versions"
    export.export_run(str(run), ["saved_model"], out=str(out), version=2, log=None)
    (out / "saved_model" / "10").mkdir()  # no saved_model.pb (being copied in?): not a version yet
    assert latest_version(str(out / "saved_model")) == str(out / "saved_model" / "2")
    os.rmdir(out / "saved_model" / "10")
    assert os.listdir(out / "saved_model") == ["2"] and latest_version(str(out / "saved_model")).endswith("2")
    assert tf.saved_model.load(latest_version(str(out / "saved_model"))).signatures["translate"] is not None
    with pytest.raises(export.ExportError, match="--version"):
        export.export_run(str(run), ["saved_model"], out=str(out), version=0)


def test_the_saved_model_records_its_run_and_serving_ignores_the_record(run, exported):
    """`assets.extra/keras_transformer.json` (TensorFlow Serving's folder for extra files) names the run's tokenizers."""
    import json

    from export import pairing
    from export.saved_model import latest_version

    path = latest_version(str(run / "export" / "saved_model"))
    assert pairing.read_record(path) == json.loads(pairing.encoded(exported))
    own = pairing.fingerprints(exported.source_tokenizer, exported.target_tokenizer)
    pairing.check(str(run), own, path)  # its own run: no error
