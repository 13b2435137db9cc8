"""Data of the encoder-only and decoder-only tasks: the invented language, arrays, readers, masking."""

import gzip

import numpy as np
import pytest

from keras_transformer import END_ID, PAD_ID, START_ID
from keras_transformer.data import SyntheticLanguage
from keras_transformer.data import families
from keras_transformer.data.tokenizers import WordPieceTokenizer


@pytest.fixture(scope="module")
def language():
    return SyntheticLanguage()


@pytest.fixture(scope="module")
def tokenizer(language):
    return WordPieceTokenizer(language.vocabulary)


def test_sentences_are_grammatical_tagged_and_of_one_sentiment(language):
    words, tags, sentiments = language.sample(300, seed=3)
    assert set(sentiments) == {0, 1}
    for sentence, sentence_tags, sentiment in zip(words, tags, sentiments):
        assert len(sentence) == len(sentence_tags)
        assert language.tags_of(sentence) == sentence_tags  # ambiguous words tagged by their place
        assert language.is_grammatical(" ".join(sentence))
        sentiment_words = [w for w in sentence if w in language.lexicon["adj"] + language.lexicon["adv"]]
        assert sentiment_words and all(
            w in language.adjectives[sentiment] + language.adverbs[sentiment] for w in sentiment_words
        )
    ambiguous = {t for s, ts in zip(words, tags) for w, t in zip(s, ts) if w in language.lexicon["ambiguous"]}
    assert ambiguous == {"NOUN", "VERB"}
    assert not language.is_grammatical("the the")
    mixed = f"the {language.adjectives[0][0]} {language.lexicon['noun'][0]} {language.lexicon['verb'][0]} the " \
            f"{language.adjectives[1][0]} {language.lexicon['noun'][1]}"  # fmt: skip
    assert not language.is_grammatical(mixed)
    assert language.sample(5, seed=1) == language.sample(5, seed=1)


def test_encoder_inputs_classification_and_truncation(language, tokenizer):
    texts = language.texts(4, seed=1) + [""]
    ids = families.encoder_inputs(tokenizer, texts, max_length=8)
    assert ids.dtype == np.int32 and ids.shape[1] <= 8
    assert (ids[:, 0] == START_ID).all()
    for row, text in zip(ids, texts):
        length = min(len(text.split()), 6)
        assert row[length + 1] == END_ID and (row[length + 2 :] == PAD_ID).all()
    x, y = families.classification_data(tokenizer, texts[:2], ["b", "a"], ["a", "b"], 16)
    assert y.tolist() == [1, 0]
    with pytest.raises(ValueError, match="Unknown label"):
        families.classification_data(tokenizer, texts[:1], ["c"], ["a", "b"], 16)
    with pytest.raises(ValueError, match="max_length"):
        families.encoder_inputs(tokenizer, texts, max_length=2)


def test_tagging_data_keeps_one_position_per_word(language, tokenizer):
    words, tags, _ = language.sample(5, seed=2)
    words[0] = ["unheard-of", *words[0][1:]]
    names = ["[PAD]", "DET", "ADJ", "NOUN", "VERB", "ADV", "CONJ"]
    x, y = families.tagging_data(tokenizer, words, tags, names, max_length=32)
    assert x.shape == y.shape
    for row_x, row_y, sentence, sentence_tags in zip(x, y, words, tags):
        n = len(sentence)
        assert row_x[0] == START_ID and row_x[n + 1] == END_ID and row_y[0] == row_y[n + 1] == PAD_ID
        assert [names[i] for i in row_y[1 : n + 1]] == sentence_tags
    assert x[0, 1] == 1  # an unknown word is [UNK], still one position


def test_language_model_data_shifts_by_one(language, tokenizer):
    x, y = families.language_model_data(tokenizer, language.texts(3, seed=4), max_length=40)
    words = (y[:, :-1] != PAD_ID) & (y[:, :-1] != END_ID)
    np.testing.assert_array_equal(x[:, 1:][words], y[:, :-1][words])
    assert (x[:, 0] == START_ID).all() and ((y == END_ID).sum(1) == 1).all()


def test_masked_lm_dataset_masks_real_tokens_only(language, tokenizer):
    ids = families.encoder_inputs(tokenizer, language.texts(400, seed=5), max_length=32)
    mask_id = tokenizer.vocabulary_size
    dataset = families.masked_lm_dataset(ids, mask_id, mask_id + 1, batch_size=400, shuffle=False)
    inputs, labels = next(iter(dataset))
    masked, positions, labels = inputs["token_ids"].numpy(), inputs["mask_positions"].numpy(), labels.numpy()
    selected = labels != 0
    rows = np.repeat(np.arange(len(ids))[:, None], positions.shape[1], 1)
    np.testing.assert_array_equal(ids[rows[selected], positions[selected]], labels[selected])  # labels: the originals
    assert not np.isin(labels[selected], [PAD_ID, START_ID, END_ID]).any()
    replaced = masked[rows[selected], positions[selected]]
    share = np.mean(replaced == mask_id)
    assert 0.7 < share < 0.9  # 80% [MASK]; the rest random or kept
    assert 0.12 < selected.sum() / (ids > END_ID).sum() < 0.25  # 15%, rounded up per (short) row
    unselected = np.ones_like(ids, bool)
    unselected[rows[selected], positions[selected]] = False
    np.testing.assert_array_equal(masked[unselected], ids[unselected])


def test_readers(tmp_path):
    (tmp_path / "labels.tsv").write_text("good film\tpos\nbad\tneg\nno tab here\n\tpos\n")
    texts, labels, report = families.read_labelled(str(tmp_path / "labels.tsv"))
    assert (texts, labels) == (["good film", "bad"], ["pos", "neg"])
    assert "2 pairs kept of 4 lines" in report.summary()
    conll = "# a comment\nThe\tDET\ncat\tNOUN\n\nsat\tVERB\n\nno-tag\n\nA\tx\tDET\n"
    (tmp_path / "tags.conll.gz").write_bytes(gzip.compress(conll.encode()))
    sentences, tags, report = families.read_conll(str(tmp_path / "tags.conll.gz"))
    assert sentences == [["The", "cat"], ["sat"], ["A"]] and tags == [["DET", "NOUN"], ["VERB"], ["DET"]]
    assert "not token<TAB>tag" in report.summary() and "3 sentences kept" in report.summary()
    (tmp_path / "empty.conll").write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        families.read_conll(str(tmp_path / "empty.conll"))
    vocabulary = families.word_vocabulary([["a", "b", "a"], ["c", "a", "b"]], size=6)
    assert vocabulary == ["[PAD]", "[UNK]", "[START]", "[END]", "a", "b"]
    assert families.label_vocabulary(["y", "x", "y"], reserved=["[PAD]"]) == ["[PAD]", "x", "y"]
