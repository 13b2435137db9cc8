import pytest


@pytest.fixture(scope="session")
def marian(tmp_path_factory):
    """A small Marian checkpoint trained with torch (`checkpoint.make_marian_checkpoint`): `(path, pairs)`."""
    import torch

    from tests.pretrained.checkpoint import make_marian_checkpoint

    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("marian") / "opus-mt-tiny"
    pairs, _ = make_marian_checkpoint(str(path), steps=300)
    return path, pairs


@pytest.fixture(scope="session")
def hf(marian):
    """transformers' model and tokenizer of the checkpoint."""
    from transformers import MarianMTModel, MarianTokenizer

    path, _ = marian
    return MarianMTModel.from_pretrained(str(path)).eval(), MarianTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="session")
def imported(marian, tmp_path_factory):
    """The checkpoint imported as a run directory."""
    from keras_transformer.pretrained import import_marian

    path, _ = marian
    return import_marian(str(path), str(tmp_path_factory.mktemp("runs")), "opus")


@pytest.fixture(scope="session")
def loaded(imported):
    from keras_transformer.run_directory import RunDirectory

    return RunDirectory(imported).load()


@pytest.fixture(scope="session")
def sentences(marian):
    """200 held-out source sentences with their references."""
    from tests.pretrained.checkpoint import synthetic_pairs

    return synthetic_pairs(200, seed=7)
