import numpy as np
import pytest

from keras_transformer import END_ID, PAD_ID, START_ID
from keras_transformer.data import SyntheticTranslationTask, teacher_forcing


def test_teacher_forcing_shifts_right_behind_start_and_ends_labels():
    inputs, labels = teacher_forcing([[7, 8, 9], [5]], max_length=5)
    np.testing.assert_array_equal(inputs, [[START_ID, 7, 8, 9, 0], [START_ID, 5, 0, 0, 0]])
    np.testing.assert_array_equal(labels, [[7, 8, 9, END_ID, 0], [5, END_ID, 0, 0, 0]])
    with pytest.raises(ValueError, match="does not fit"):
        teacher_forcing([[1, 2, 3, 4, 5]], max_length=5)


def test_task_is_deterministic_and_has_hundreds_of_words():
    task = SyntheticTranslationTask()
    assert task.source_vocabulary_size > 250 and task.target_vocabulary_size > 250
    assert SyntheticTranslationTask().sample(5, seed=3) == task.sample(5, seed=3)
    assert task.sample(5, seed=3) != task.sample(5, seed=4)


def test_translation_reorders_drops_and_inserts_words():
    task = SyntheticTranslationTask()
    sources, targets = task.sample(300, seed=0)
    lengths = [len(s) for s in sources]
    assert min(lengths) <= 4 and max(lengths) >= 15
    verbs = {task.lexicon[v] for v in task.source_words["verb"]}
    for source, target in zip(sources, targets):
        assert target[-1] in verbs  # verb-final
        articles = sum(source.count(a) for a in task.articles)
        particles = sum(target.count(p) for p in (task.subject_particle, task.object_particle))
        assert articles >= 1 and task.subject_particle in target
        # Articles dropped, case particles inserted, every other word kept.
        assert len(target) == len(source) - articles + particles
    # Noun-adjective order is swapped: "A N" -> "N' A'".
    rng = np.random.default_rng(1)
    for _ in range(50):
        source, target = task._noun_phrase(rng)
        content = source[1:]
        assert target == [task.lexicon[content[-1]]] + [task.lexicon[a] for a in reversed(content[:-1])]


def test_dataset_arrays_for_fit():
    task = SyntheticTranslationTask()
    inputs, labels = task.dataset(64, seed=2)
    encoder, decoder = inputs["encoder_token_ids"], inputs["decoder_token_ids"]
    assert encoder.dtype == np.int32 and decoder.shape == labels.shape
    assert np.all(decoder[:, 0] == START_ID)
    np.testing.assert_array_equal(decoder[:, 1:][labels[:, :-1] != END_ID], labels[:, :-1][labels[:, :-1] != END_ID])
    assert np.all((labels == END_ID).sum(1) == 1)
    assert np.all(encoder[:, 0] != PAD_ID)


def test_text_round_trip():
    task = SyntheticTranslationTask()
    sources, targets = task.sample(3, seed=5)
    words = task.source_text(sources[0]).split()
    assert [task.source_vocabulary.index(w) for w in words] == sources[0]
    assert task.target_text([START_ID, *targets[0], END_ID, 0]) == task.target_text(targets[0])


def test_invented_vocabularies_are_the_same_in_every_process():
    """String hashing differs between processes; the invented words must not depend on it."""
    import os
    import subprocess
    import sys

    code = (
        "import keras_transformer as kt; "
        "print(' '.join(kt.data.SyntheticLanguage().vocabulary + kt.data.SyntheticTranslationTask().source_vocabulary))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
