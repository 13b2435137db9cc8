"""The text TFLite's in-graph detokenizer writes what the run's own tokenizers write, for any ids."""

import numpy as np
import pytest

from keras_transformer.vocabulary import END_ID

LINES = ["the cat sat on the mat", "a dog ran in the park", "unbelievable things happen, don't they?",
         "Grüße aus München 123", "x-ray   spaced  out"] * 40  # fmt: skip


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_in_graph_detokenizer_equals_the_tokenizers_on_random_ids(kind):
    """Random rows, reserved ids and end tokens included: a continuation or a lone space first, spaces inside."""
    import tensorflow as tf

    from export.tflite_text import detokenize_in_graph, surface_strings
    from keras_transformer.data.tokenizers import SentencePieceTokenizer, WordPieceTokenizer

    tokenizer = WordPieceTokenizer.train(LINES, 90) if kind == "wordpiece" else SentencePieceTokenizer.train(LINES, 45)
    strings = surface_strings(tokenizer)
    size = tokenizer.vocabulary_size
    rng = np.random.default_rng(0)
    ids = rng.integers(0, size, size=(600, 9)).astype("int32")
    ids[:300, 0] = rng.integers(END_ID + 1, size, size=300)  # half the rows start with a real piece
    if kind == "sentencepiece":  # rows of lone "▁" pieces before, between and after words
        space = int(tokenizer.tokenizer.string_to_id("\u2581").numpy())
        ids[300:400, :2] = space
        ids[400:450] = space
    ids[450:500, 4] = END_ID  # stopped early: what follows the end token is not written
    graph = [text.decode("utf-8") for text in detokenize_in_graph(strings, tf.constant(ids)).numpy()]
    expected = [text.decode("utf-8") for text in tokenizer.detokenize(tf.constant(ids)).numpy()]
    different = [(i, g, e) for i, (g, e) in enumerate(zip(graph, expected)) if g != e]
    assert not different, different[:5]
    assert not any(text.startswith(" ") for text in graph)
