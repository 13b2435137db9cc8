import numpy as np
import pytest

import keras_transformer as kt

SOURCE_VOCAB, TARGET_VOCAB = 40, 50


def make_model(**kwargs):
    config = dict(
        source_vocabulary_size=SOURCE_VOCAB,
        target_vocabulary_size=TARGET_VOCAB,
        num_layers=2,
        hidden_dim=32,
        num_heads=4,
        intermediate_dim=64,
        dropout=0.1,
        max_sequence_length=16,
    )
    config.update(kwargs)
    return kt.Transformer(**config)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    source = rng.integers(4, SOURCE_VOCAB, size=(3, 9)).astype("int32")
    target = rng.integers(4, TARGET_VOCAB, size=(3, 7)).astype("int32")
    source[1, 6:] = 0
    target[2, 5:] = 0
    return {"encoder_token_ids": source, "decoder_token_ids": target}
