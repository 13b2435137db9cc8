import numpy as np
import pytest
from keras import ops

import keras_transformer as kt
from keras_transformer.decoding import beam_search, greedy_search, length_penalty
from tests.models.conftest import make_model
from tests.test_case import assert_close, to_numpy


def _sequence_log_prob(model, source, tokens):
    """Sum of log P(token) under teacher forcing, up to and including the end token."""
    decoder_inputs = np.concatenate([[kt.START_ID], tokens[:-1]])[None].astype("int32")
    logits = to_numpy(model({"encoder_token_ids": source[None], "decoder_token_ids": decoder_inputs}))[0]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    length = list(tokens).index(kt.END_ID) + 1 if kt.END_ID in tokens else len(tokens)
    return float(sum(log_probs[i, tokens[i]] for i in range(length))), length


def _sources(task, count, seed):
    inputs, _ = task.dataset(count, seed=seed)
    return inputs["encoder_token_ids"]


def test_length_penalty_is_gnmts():
    assert_close(length_penalty(ops.convert_to_tensor([1, 7]), 0.6), [1.0, 2.0**0.6])
    assert_close(length_penalty(ops.convert_to_tensor([9]), 0.0), [1.0])


def test_length_penalty_of_the_length_form_is_a_power_of_the_length():
    assert_close(length_penalty(ops.convert_to_tensor([1, 7]), 0.6, "length"), [1.0, 7.0**0.6])
    assert_close(length_penalty(ops.convert_to_tensor([9]), 0.0, "length"), [1.0])
    with pytest.raises(ValueError, match=r"length_penalty_form.*\('gnmt', 'length'\).*Received: length_penalty_form='wu'"):
        length_penalty(ops.convert_to_tensor([1]), 0.6, "wu")


@pytest.mark.slow
def test_beam_of_one_equals_greedy(trained):
    task, model = trained
    source = _sources(task, 8, seed=21)
    beams, _ = beam_search(model, source, max_length=30, beam_size=1, alpha=0.6)
    np.testing.assert_array_equal(to_numpy(beams)[:, 0], to_numpy(greedy_search(model, source, 30)))


@pytest.mark.slow
def test_best_beam_scores_at_least_greedy(trained):
    task, model = trained
    source = _sources(task, 12, seed=22)
    greedy = to_numpy(greedy_search(model, source, 30))
    beams, scores = beam_search(model, source, max_length=30, beam_size=4, alpha=0.0)
    beams, scores = to_numpy(beams), to_numpy(scores)
    for i in range(len(source)):
        greedy_score, _ = _sequence_log_prob(model, source[i], greedy[i])
        best_score, _ = _sequence_log_prob(model, source[i], beams[i, 0])
        assert_close(scores[i, 0], best_score, atol=1e-3)  # the reported score is the sequence's
        assert best_score >= greedy_score - 1e-4


@pytest.mark.slow
def test_n_best_lists_are_sorted_distinct_scored_and_padded(trained):
    task, model = trained
    source = _sources(task, 6, seed=23)
    beams, scores = model.generate(source, max_length=30, method="beam", beam_size=4, length_penalty=0.6)
    beams, scores = to_numpy(beams), to_numpy(scores)
    assert beams.shape == (6, 4, 30) and scores.shape == (6, 4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    for i in range(6):
        assert len({tuple(b) for b in beams[i]}) == 4
        for beam, score in zip(beams[i], scores[i]):
            # A beam ends with the end token then padding, or is cut at max_length.
            end = list(beam).index(kt.END_ID) if kt.END_ID in beam else len(beam)
            assert np.all(beam[end + 1 :] == 0) and np.all(beam[:end] > kt.END_ID)
            log_prob, length = _sequence_log_prob(model, source[i], beam)
            assert length == min(end + 1, len(beam))
            assert_close(score, log_prob / ((5 + length) / 6) ** 0.6, atol=1e-3)
    assert np.mean([kt.END_ID in beam for beam in beams[:, 0]]) == 1.0  # the best beams all ended


@pytest.mark.slow
def test_batched_beam_search_equals_one_by_one(trained):
    task, model = trained
    source = _sources(task, 4, seed=24)
    batched, batched_scores = beam_search(model, source, max_length=30, beam_size=3)
    for i in range(4):
        length = int((source[i] != 0).sum())
        single, single_scores = beam_search(model, source[i : i + 1, :length], max_length=30, beam_size=3)
        np.testing.assert_array_equal(to_numpy(batched)[i], to_numpy(single)[0])
        assert_close(to_numpy(batched_scores)[i], to_numpy(single_scores)[0], atol=1e-4)


class _Bigram:
    """A stand-in model whose next-token log-probabilities depend on the last token only."""

    def __init__(self, table):
        self.log_table = ops.convert_to_tensor(np.log(np.maximum(table, 1e-9)), "float32")

    def encode(self, encoder_token_ids):
        return ops.cast(encoder_token_ids[..., None], "float32"), encoder_token_ids != 0

    def initialize_cache(self, encoder_output, max_length):
        return (ops.zeros((ops.shape(encoder_output)[0], 1)),), ()

    def call_with_cache(self, token, self_cache, cross_cache, index, encoder_padding_mask):
        return ops.take(self.log_table, token, axis=0), self_cache, cross_cache  # (B*K, 1, V)


def test_an_ended_hypothesis_does_not_take_a_live_beams_place():
    # From the start: end 0.40, A 0.35, B 0.25; A -> C or G, each ending with 0.99; B -> D -> end.
    # With alpha 2 the best of all is "B D end" (log 0.25 / (8/6)^2 = -0.78, against "end" alone
    # -0.92 and "A C end" -0.99), reached only if "B" stays live beside the ended "end" after the first step.
    a, b, c, d, g = 4, 5, 6, 7, 8
    table = np.zeros((9, 9))
    table[kt.START_ID, [kt.END_ID, a, b]] = [0.40, 0.35, 0.25]
    table[a, [c, g]] = 0.5
    table[b, d] = 1.0
    table[[c, g], kt.END_ID] = 0.99
    table[[c, g], c] = 0.01
    table[d, kt.END_ID] = 1.0
    table[kt.END_ID, kt.END_ID] = table[kt.PAD_ID, kt.PAD_ID] = table[kt.UNKNOWN_ID, kt.END_ID] = 1.0
    beams, scores = beam_search(_Bigram(table), np.ones((1, 3), "int32"), max_length=6, beam_size=2, alpha=2.0)
    np.testing.assert_array_equal(to_numpy(beams)[0, 0, :3], [b, d, kt.END_ID])
    assert_close(to_numpy(scores)[0], [np.log(0.25) / (8 / 6) ** 2, np.log(0.40)], atol=1e-5)  # then "end" alone


def test_the_length_form_ranks_a_long_hypothesis_above_one_gnmt_prefers():
    # From the start: end 0.7, A 0.3; A -> B -> C -> end, each for sure. With alpha 1, GNMT ranks
    # "end" (log 0.7 / 1 = -0.36) above "A B C end" (log 0.3 / (9/6) = -0.80); the length form
    # ranks "A B C end" (log 0.3 / 4 = -0.30) above "end" (log 0.7 / 1).
    a, b, c = 4, 5, 6
    table = np.zeros((7, 7))
    table[kt.START_ID, [kt.END_ID, a]] = [0.7, 0.3]
    table[a, b] = table[b, c] = table[c, kt.END_ID] = 1.0
    table[kt.END_ID, kt.END_ID] = table[kt.PAD_ID, kt.PAD_ID] = table[kt.UNKNOWN_ID, kt.END_ID] = 1.0
    model, source = _Bigram(table), np.ones((1, 3), "int32")
    gnmt, gnmt_scores = beam_search(model, source, max_length=8, beam_size=2, alpha=1.0)
    power, power_scores = beam_search(model, source, max_length=8, beam_size=2, alpha=1.0, length_penalty_form="length")
    np.testing.assert_array_equal(to_numpy(gnmt)[0, :, :4], [[kt.END_ID, 0, 0, 0], [a, b, c, kt.END_ID]])
    np.testing.assert_array_equal(to_numpy(power)[0, :, :4], [[a, b, c, kt.END_ID], [kt.END_ID, 0, 0, 0]])
    assert_close(to_numpy(gnmt_scores)[0], [np.log(0.7), np.log(0.3) / (9 / 6)], atol=1e-5)
    assert_close(to_numpy(power_scores)[0], [np.log(0.3) / 4, np.log(0.7)], atol=1e-5)


def test_exact_stop_finds_a_longer_hypothesis_the_early_stop_misses():
    # From the start: end 0.55, A 0.45; A -> B -> C -> end, each for sure. With beam 1 and alpha 2,
    # "end" (log 0.55 / 1) finishes first and the live "A" scores no better at length 1, so the
    # default stops there; "A B C end" (log 0.45 / (9/6)^2) is better and only exact_stop reaches it.
    a, b, c = 4, 5, 6
    table = np.zeros((7, 7))
    table[kt.START_ID, [kt.END_ID, a]] = [0.55, 0.45]  # unequal: top_k breaks ties differently per backend
    table[a, b] = table[b, c] = table[c, kt.END_ID] = 1.0
    table[kt.END_ID, kt.END_ID] = table[kt.PAD_ID, kt.PAD_ID] = table[kt.UNKNOWN_ID, kt.END_ID] = 1.0
    model, source = _Bigram(table), np.ones((1, 3), "int32")
    early, early_scores = beam_search(model, source, max_length=8, beam_size=1, alpha=2.0)
    exact, exact_scores = beam_search(model, source, max_length=8, beam_size=1, alpha=2.0, exact_stop=True)
    np.testing.assert_array_equal(to_numpy(early)[0, 0, :1], [kt.END_ID])
    np.testing.assert_array_equal(to_numpy(exact)[0, 0, :4], [a, b, c, kt.END_ID])
    assert_close(to_numpy(early_scores)[0], [np.log(0.55)], atol=1e-5)
    assert_close(to_numpy(exact_scores)[0], [np.log(0.45) / (9 / 6) ** 2], atol=1e-5)


@pytest.mark.slow
def test_exact_stop_never_scores_worse_and_changes_nothing_without_a_length_penalty(trained):
    task, model = trained
    source = _sources(task, 12, seed=25)
    for alpha in (0.0, 1.5):
        early, early_scores = model.generate(source, max_length=30, method="beam", beam_size=3, length_penalty=alpha)
        exact, exact_scores = model.generate(
            source, max_length=30, method="beam", beam_size=3, length_penalty=alpha, exact_stop=True
        )
        early, exact = to_numpy(early), to_numpy(exact)
        early_scores, exact_scores = to_numpy(early_scores), to_numpy(exact_scores)
        if alpha == 0.0:  # log-probabilities only fall, so the early stop is already exact
            np.testing.assert_array_equal(exact, early)
            continue
        # The same live beams, run further: the best finished hypothesis can only improve.
        assert np.all(exact_scores[:, 0] >= early_scores[:, 0] - 1e-5)
        for i in np.flatnonzero(exact_scores[:, 0] > early_scores[:, 0] + 1e-5):
            log_prob, length = _sequence_log_prob(model, source[i], exact[i, 0])
            assert_close(exact_scores[i, 0], log_prob / ((5 + length) / 6) ** alpha, atol=1e-3)


def test_beam_arguments_are_checked():
    model = make_model()
    source = np.ones((2, 5), "int32")
    with pytest.raises(ValueError, match="beam_size"):
        model.generate(source, max_length=4, method="beam", beam_size=0)
    with pytest.raises(ValueError, match="method"):
        model.generate(source, max_length=4, method="nucleus")
    with pytest.raises(ValueError, match="exact_stop"):
        model.generate(source, max_length=4, method="beam", exact_stop="yes")
    with pytest.raises(ValueError, match="length_penalty_form"):
        model.generate(source, max_length=4, method="beam", length_penalty_form="average")
