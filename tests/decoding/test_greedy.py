import os

import keras
import numpy as np
import pytest

import keras_transformer as kt
from keras_transformer.decoding import greedy_search
from tests.models.conftest import make_model
from tests.test_case import to_numpy


def _reference_greedy(model, source, max_length):
    """Greedy decoding by re-running the full decoder over the prefix (no cache)."""
    outputs = []
    for row in source:
        prefix = [kt.START_ID]
        for _ in range(max_length):
            logits = model({"encoder_token_ids": row[None], "decoder_token_ids": np.array([prefix], "int32")})
            token = int(np.argmax(to_numpy(logits)[0, -1]))
            prefix.append(token)
            if token == kt.END_ID:
                break
        generated = prefix[1:] + [0] * (max_length - len(prefix) + 1)
        outputs.append(generated)
    return np.array(outputs)


@pytest.mark.slow
def test_greedy_equals_uncached_greedy_and_translates(trained):
    task, model = trained
    sources, targets = task.sample(6, seed=9)
    source = np.zeros((6, 20), "int32")
    for i, s in enumerate(sources):
        source[i, : len(s)] = s
    generated = to_numpy(model.generate(source, max_length=24))
    np.testing.assert_array_equal(generated, _reference_greedy(model, source, 24))
    # Trained briefly, it already gets most sentences exactly right.
    exact = [list(g[: list(g).index(kt.END_ID)]) == t if kt.END_ID in g else False for g, t in zip(generated, targets)]
    assert np.mean(exact) >= 0.5


@pytest.mark.slow
def test_sequences_stop_at_end_and_pad_after(trained):
    task, model = trained
    inputs, _ = task.dataset(16, seed=11)
    generated = to_numpy(greedy_search(model, inputs["encoder_token_ids"], max_length=30))
    assert generated.shape == (16, 30)
    ends = [list(row).index(kt.END_ID) for row in generated if kt.END_ID in row]
    assert len(ends) == 16 and max(ends) < 29  # every sentence ended, early
    for row, end in zip(generated, ends):
        assert np.all(row[end + 1 :] == 0)
        assert np.all(row[:end] > kt.END_ID)  # no reserved id before the end


def test_batched_equals_one_by_one_and_padding_of_sources():
    model = make_model(dropout=0.0)
    rng = np.random.default_rng(1)
    source = rng.integers(4, 40, size=(4, 7)).astype("int32")
    source[1, 4:] = 0
    source[3, 2:] = 0
    batched = to_numpy(model.generate(source, max_length=6))
    for i in range(4):
        length = int((source[i] != 0).sum())
        single = to_numpy(model.generate(source[i : i + 1, :length], max_length=6))
        np.testing.assert_array_equal(batched[i], single[0])


def test_generate_validates_arguments():
    model = make_model()
    source = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match="max_length"):
        model.generate(source, max_length=100)
    with pytest.raises(ValueError, match="method"):
        model.generate(source, max_length=4, method="nucleus")
    with pytest.raises(ValueError, match="integer token ids"):
        model.generate(source.astype("float32"), max_length=4)
    assert to_numpy(model.generate(np.zeros((0, 5), "int32"), max_length=4)).shape == (0, 4)


def test_generate_after_save_and_load(tmp_path):
    model = make_model(dropout=0.0)
    source = np.random.default_rng(2).integers(4, 40, size=(3, 5)).astype("int32")
    expected = to_numpy(model.generate(source, max_length=5))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(restored.generate(source, max_length=5)), expected)


def test_compiled_generate_sees_later_weight_updates():
    """The compiled loop reads the variables at call time (TF: captured by
    reference; JAX: passed in as arguments), not their values when traced."""
    keras.utils.set_random_seed(0)
    model = make_model(dropout=0.0)
    other = make_model(dropout=0.0)
    source = np.random.default_rng(3).integers(4, 40, size=(3, 6)).astype("int32")
    before = to_numpy(model.generate(source, max_length=6))
    expected = to_numpy(other.generate(source, max_length=6))
    assert not np.array_equal(before, expected)
    model.set_weights(other.get_weights())
    np.testing.assert_array_equal(to_numpy(model.generate(source, max_length=6)), expected)
