import numpy as np
import pytest
import tensorflow as tf

from keras_transformer import END_ID, START_ID
from keras_transformer.data.pipeline import make_dataset
from keras_transformer.data.tokenizers import train_tokenizer

WORDS = "the a cat dog sees runs big small red on under table house and".split()


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    sources = [" ".join(rng.choice(WORDS, size=rng.integers(1, 30))) for _ in range(300)]
    targets = [" ".join(reversed(s.split())) + " ." for s in sources]
    return sources, targets


@pytest.fixture(scope="module")
def tokenizer(pairs):
    return train_tokenizer("wordpiece", pairs[0] + pairs[1], 100)


def _batches(dataset):
    return [(x["encoder_token_ids"].numpy(), x["decoder_token_ids"].numpy(), y.numpy()) for x, y in dataset]


def test_batches_shift_for_teacher_forcing_and_pad_with_zero(pairs, tokenizer):
    batches = _batches(make_dataset(*pairs, tokenizer, tokenizer, max_length=64, batch_size=16, shuffle=False))
    for source, decoder_inputs, labels in batches:
        assert source.dtype == np.int32 and decoder_inputs.shape == labels.shape
        assert np.all(decoder_inputs[:, 0] == START_ID)
        lengths = (labels != 0).sum(1)
        for row, length in zip(range(len(labels)), lengths):
            assert labels[row, length - 1] == END_ID and np.all(labels[row, length:] == 0)
            np.testing.assert_array_equal(decoder_inputs[row, 1:length], labels[row, : length - 1])
            assert np.all(decoder_inputs[row, length:] == 0)
        assert np.all((source != 0).sum(1) > 0)


def test_every_pair_once_per_epoch_with_the_right_ids(pairs, tokenizer):
    sources, targets = pairs
    dataset = make_dataset(sources, targets, tokenizer, tokenizer, max_length=64, batch_size=32, seed=1)
    seen = sorted(tuple(row[row != 0]) for source, _, _ in _batches(dataset) for row in source)
    expected = sorted(tuple(ids) for ids in tokenizer.tokenize(tf.constant(sources)).to_list())
    assert seen == expected
    first = [tuple(r) for r in _batches(dataset)[0][0]]
    second = [tuple(r) for r in _batches(dataset)[0][0]]
    assert first != second  # reshuffled each epoch


def test_truncation_to_max_length(pairs, tokenizer):
    batches = _batches(make_dataset(*pairs, tokenizer, tokenizer, max_length=8, batch_size=16, shuffle=False))
    assert max(b[0].shape[1] for b in batches) == 8 and max(b[2].shape[1] for b in batches) == 8
    # A truncated target still ends with the end token.
    for _, _, labels in batches:
        lengths = (labels != 0).sum(1)
        assert np.all(labels[np.arange(len(labels)), lengths - 1] == END_ID)


def test_token_batching_respects_the_budget_and_buckets_lengths(pairs, tokenizer):
    batches = _batches(
        make_dataset(*pairs, tokenizer, tokenizer, max_length=64, batch_size=256, batch_by="tokens", shuffle=False)
    )
    for source, _, labels in batches:
        assert len(source) * max(source.shape[1], labels.shape[1]) <= 256 * 2
    assert len({len(b[0]) for b in batches}) > 1  # short sentences make bigger batches


def test_counted_batches_give_keras_the_epoch_length(pairs, tokenizer):
    dataset = make_dataset(*pairs, tokenizer, tokenizer, max_length=64, batch_size=32, count_batches=True, seed=3)
    assert int(dataset.cardinality()) == len(_batches(dataset)) == len(_batches(dataset))


def test_bad_arguments(pairs, tokenizer):
    with pytest.raises(ValueError, match="batch_by"):
        make_dataset(*pairs, tokenizer, tokenizer, max_length=8, batch_size=4, batch_by="words")
    with pytest.raises(ValueError, match="max_length"):
        make_dataset(*pairs, tokenizer, tokenizer, max_length=1, batch_size=4)
