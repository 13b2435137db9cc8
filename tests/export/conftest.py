import numpy as np
import pytest


@pytest.fixture(scope="session")
def exported(run):
    """The test text run (trained and exported by train.py) loaded for export checks."""
    from export import Run

    return Run(str(run))


@pytest.fixture(scope="session")
def sources(corpus, exported):
    """Test inputs: short sentences, blank-free, plus ones cut at the maximum length."""
    from export.converter import encode_sentences

    _, sentences, _ = corpus
    long_sentence = " ".join(sentences[1000:1010])  # far over 24 tokens: truncated to the maximum
    texts = sentences[1000:1012] + [long_sentence]
    ids = encode_sentences(exported, texts)
    assert (ids[-1] != 0).all() and (ids[0] == 0).any()  # maximum length and short inputs
    return texts, ids


@pytest.fixture(scope="session")
def int8_path(run):
    """The full-int8 variant (not in train.py's default formats), calibrated on the run's training data."""
    from export import export_run

    return export_run(str(run), ["tflite_int8"])["tflite_int8"]


def tflite_path(run, variant="tflite"):
    from export.tflite import VARIANTS

    return str(run / "export" / VARIANTS[variant])


def agreement(reference, tokens):
    from export.verify import token_agreement

    return token_agreement(np.asarray(reference), np.asarray(tokens))[0]
