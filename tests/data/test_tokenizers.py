import os
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from keras_transformer import END_ID, PAD_ID, START_ID, UNKNOWN_ID
from keras_transformer.data.tokenizers import (
    RESERVED_TOKENS,
    SentencePieceTokenizer,
    WordPieceTokenizer,
    load_tokenizers,
    save_tokenizers,
    train_tokenizer,
)
from tests.data.conftest import MULTILINGUAL

SIZES = {"wordpiece": 300, "sentencepiece": 110}


@pytest.fixture(scope="module", params=["wordpiece", "sentencepiece"])
def tokenizer(request, corpus):
    return train_tokenizer(request.param, corpus, SIZES[request.param])


def _decode(strings):
    return [s.decode("utf-8") for s in strings.numpy()]


def _expected(tokenizer, texts):
    """What a lossless round trip gives: SentencePiece applies NFKC (e.g. "，" -> ",")."""
    if tokenizer.kind == "sentencepiece":
        return [unicodedata.normalize("NFKC", text) for text in texts]
    return list(texts)


def test_round_trip_is_lossless_in_every_script(tokenizer):
    ids = tokenizer.tokenize(tf.constant(MULTILINGUAL))
    assert _decode(tokenizer.detokenize(ids)) == _expected(tokenizer, MULTILINGUAL)


def test_ids_avoid_reserved_ones_and_fit_the_vocabulary(tokenizer):
    ids = tokenizer.tokenize(tf.constant(MULTILINGUAL)).flat_values.numpy()
    assert ids.min() > END_ID and ids.max() < tokenizer.vocabulary_size


def test_whitespace_runs_are_normalised_to_one_space(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["  Hello,   world!  "]))
    assert _decode(tokenizer.detokenize(ids)) == ["Hello, world!"]


def test_unseen_characters_become_the_unknown_id(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["Hello ∰∯ world"])).flat_values.numpy()
    assert UNKNOWN_ID in ids


def test_detokenize_stops_at_end_and_skips_padding_and_start(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["Hello, world!"])).to_tensor().numpy()[0]
    padded = np.array([[START_ID, *ids, END_ID, *ids, PAD_ID, PAD_ID]])
    assert _decode(tokenizer.detokenize(padded)) == ["Hello, world!"]


def test_tokenize_works_inside_tf_data(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(MULTILINGUAL).batch(4).map(tokenizer.tokenize)
    rows = [row for batch in dataset for row in batch.to_list()]
    assert rows == tokenizer.tokenize(tf.constant(MULTILINGUAL)).to_list()


@pytest.mark.parametrize("joint", [True, False])
def test_save_and_load_round_trip(joint, corpus, tmp_path):
    source = train_tokenizer("wordpiece", corpus, 300)
    target = source if joint else train_tokenizer("sentencepiece", corpus, 110)
    save_tokenizers(str(tmp_path), source, target)
    loaded_source, loaded_target = load_tokenizers(str(tmp_path))
    assert (loaded_source is loaded_target) == joint
    for original, loaded in [(source, loaded_source), (target, loaded_target)]:
        assert type(loaded) is type(original) and loaded.vocabulary_size == original.vocabulary_size
        text = tf.constant(MULTILINGUAL)
        assert loaded.tokenize(text).to_list() == original.tokenize(text).to_list()


def test_load_reports_missing_and_corrupt_files(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="Tokenizer files missing"):
        load_tokenizers(str(tmp_path))
    save_tokenizers(str(tmp_path), train_tokenizer("wordpiece", corpus, 300), train_tokenizer("wordpiece", corpus, 300))
    os.remove(tmp_path / "target.vocab")
    with pytest.raises(FileNotFoundError, match="target.vocab"):
        load_tokenizers(str(tmp_path))
    (tmp_path / "tokenizers.json").write_text('{"source": {"kind": "bpe-magic"}}')
    with pytest.raises(ValueError, match="corrupt"):
        load_tokenizers(str(tmp_path))


def test_vocabularies_keep_the_reserved_ids(corpus):
    wordpiece = train_tokenizer("wordpiece", corpus, 300)
    assert tuple(wordpiece.vocabulary[:4]) == RESERVED_TOKENS
    with pytest.raises(ValueError, match="must start with"):
        WordPieceTokenizer(["a", "b", "c", "d"])
    sentencepiece = train_tokenizer("sentencepiece", corpus, 110)
    pieces = [sentencepiece.tokenizer.id_to_string(i).numpy().decode() for i in range(4)]
    assert pieces == ["<pad>", "<unk>", "<s>", "</s>"]


def test_training_errors_are_clear(corpus):
    with pytest.raises(ValueError, match="every line is empty"):
        train_tokenizer("wordpiece", ["", "  "], 100)
    with pytest.raises(ValueError, match="SentencePiece could not build a vocabulary of 5000"):
        SentencePieceTokenizer.train(corpus, 5000)
    with pytest.raises(ValueError, match="Unknown tokenizer"):
        train_tokenizer("bpe-magic", corpus, 100)


def test_tokenizers_survive_reseeding(tokenizer):
    """keras.utils.set_random_seed clears TensorFlow's kernel cache (and op resources)."""
    import keras

    before = tokenizer.tokenize(tf.constant(MULTILINGUAL)).to_list()
    keras.utils.set_random_seed(7)
    assert tokenizer.tokenize(tf.constant(MULTILINGUAL)).to_list() == before
    assert _decode(tokenizer.detokenize(tf.ragged.constant(before))) == _expected(tokenizer, MULTILINGUAL)
