import keras
import pytest

import keras_transformer as kt


@pytest.fixture(scope="package")
def trained():
    """A tiny model trained briefly on a small synthetic task, so it emits end tokens."""
    keras.utils.set_random_seed(0)
    task = kt.data.SyntheticTranslationTask(
        num_nouns=8, num_adjectives=4, num_verbs=4, num_adverbs=2, num_prepositions=2, max_adjectives=1
    )
    x, y = task.dataset(1500, seed=1)
    model = kt.Transformer(
        task.source_vocabulary_size, task.target_vocabulary_size, num_layers=1, hidden_dim=32,
        num_heads=4, intermediate_dim=64, dropout=0.0, max_sequence_length=32,
    )  # fmt: skip
    model.compile(optimizer=kt.optimizers.transformer_adam(32, warmup_steps=100))
    model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    return task, model
