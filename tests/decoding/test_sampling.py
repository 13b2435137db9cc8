import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.decoding import filter_logits
from tests.models.conftest import make_model
from tests.test_case import to_numpy


def _sources(task, count, seed):
    inputs, _ = task.dataset(count, seed=seed)
    return inputs["encoder_token_ids"]


def test_filter_logits_top_k_top_p_and_temperature():
    logits = np.log(np.array([[0.5, 0.25, 0.15, 0.1]], "float32"))
    kept = lambda x: to_numpy(x)[0] > -1e30  # noqa: E731
    np.testing.assert_array_equal(kept(filter_logits(logits, top_k=2)), [1, 1, 0, 0])
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.7)), [1, 1, 0, 0])
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.75)), [1, 1, 0, 0])
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.76)), [1, 1, 1, 0])
    np.testing.assert_array_equal(kept(filter_logits(logits, top_p=0.1)), [1, 0, 0, 0])
    np.testing.assert_allclose(to_numpy(filter_logits(logits, temperature=2.0)), logits / 2.0)


@pytest.mark.slow
def test_sampling_is_reproducible_with_a_seed_and_varies_without(trained):
    task, model = trained
    source = _sources(task, 8, seed=31)
    first = to_numpy(model.generate(source, max_length=30, method="sample", temperature=1.5, seed=7))
    again = to_numpy(model.generate(source, max_length=30, method="sample", temperature=1.5, seed=7))
    other = to_numpy(model.generate(source, max_length=30, method="sample", temperature=1.5, seed=8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    for row in first:  # each sentence stops at its own end token
        if kt.END_ID in row:
            assert np.all(row[list(row).index(kt.END_ID) + 1 :] == 0)


@pytest.mark.slow
def test_top_k_of_one_equals_greedy(trained):
    task, model = trained
    source = _sources(task, 8, seed=32)
    greedy = to_numpy(model.generate(source, max_length=30))
    sampled = to_numpy(model.generate(source, max_length=30, method="sample", top_k=1, seed=3))
    np.testing.assert_array_equal(sampled, greedy)


def test_sampling_arguments_are_checked():
    model = make_model()
    source = np.ones((2, 5), "int32")
    for kwargs, match in [
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.generate(source, max_length=4, method="sample", **kwargs)


def test_sampling_does_not_add_weights_to_the_model(tmp_path):
    model = make_model()
    count = len(model.weights)
    model.generate(np.ones((2, 5), "int32"), max_length=4, method="sample", seed=1)
    assert len(model.weights) == count
    model.save(tmp_path / "m.keras")
