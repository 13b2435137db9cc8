"""SavedModel export: text, token and logit signatures equal the Keras model."""

import numpy as np
import pytest

from keras_transformer.translator import Translator
from tests.test_case import to_numpy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    return tf.saved_model.load(str(run / "export" / "saved_model"))


def test_signatures_are_listed(loaded):
    assert {"serving_default", "translate", "translate_beam", "generate", "beam_search", "logits"} <= set(
        loaded.signatures
    )


def test_text_signatures_equal_the_keras_translator(loaded, exported, sources):
    import tensorflow as tf

    texts, _ = sources
    texts = texts[:6] + ["", "   "] + texts[6:]
    greedy = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer)
    beam = Translator(exported.model, exported.source_tokenizer, exported.target_tokenizer, beam_size=4)
    for signature, translator in (("translate", greedy), ("translate_beam", beam)):
        outputs = loaded.signatures[signature](text=tf.constant(texts))["translation"].numpy()
        assert [t.decode("utf-8") for t in outputs] == translator.translate(texts), signature
    one = loaded.signatures["serving_default"](text=tf.constant(texts[:1]))["translation"].numpy()
    assert one[0].decode("utf-8") == greedy.translate(texts[:1])[0]
    blank = loaded.signatures["translate"](text=tf.constant(["", " "]))["translation"].numpy()
    assert list(blank) == [b"", b""]


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
