import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import gzip  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_policy():
    """Every test starts seeded, in float32, with a fresh Keras session."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1337)
    yield
    keras.config.set_dtype_policy("float32")


MODEL = [
    "--num-layers", "1", "--hidden-dim", "32", "--num-heads", "4", "--intermediate-dim", "64",
    "--dropout", "0", "--max-length", "24", "--warmup-steps", "100", "--learning-rate-scale", "1",
    "--batch-size", "32", "--verbose", "0",
]  # fmt: skip


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Sentences of two invented languages, written as text files: gzip, plain, TSV."""
    from keras_transformer.data import SyntheticTranslationTask

    directory = tmp_path_factory.mktemp("corpus")
    task = SyntheticTranslationTask(
        num_nouns=8, num_adjectives=4, num_verbs=4, num_adverbs=2, num_prepositions=2, max_adjectives=1
    )
    sources, targets = task.sample(1200, seed=1)
    sources = [task.source_text(s).capitalize() + "." for s in sources]
    targets = [task.target_text(t).capitalize() + "!" for t in targets]
    (directory / "train.src.gz").write_bytes(gzip.compress(("\n".join(sources[:1000]) + "\n").encode()))
    (directory / "train.tgt").write_text("\n".join(targets[:1000]) + "\n")
    (directory / "val.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources[1000:], targets[1000:])))
    return directory, sources, targets


def _text_run_arguments(corpus, out):
    directory, _, _ = corpus
    return MODEL + [
        "--train-src", str(directory / "train.src.gz"), "--train-tgt", str(directory / "train.tgt"),
        "--val-tsv", str(directory / "val.tsv"), "--tokenizer", "wordpiece", "--vocab-size", "200",
        "--epochs", "8", "--out", str(out), "--name", "text",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(corpus, tmp_path_factory):
    """A text run trained by train.py (WordPiece), not exported yet: what the quick tests read."""
    import train

    out = tmp_path_factory.mktemp("runs")
    train.main(_text_run_arguments(corpus, out) + ["--no-export"])
    return out / "text"


@pytest.fixture(scope="session")
def run(trained_run, corpus):
    """The same run exported in every default format, by the export train.py runs at the end of training."""
    from keras_transformer import train

    args, _, _ = train.parse_args(_text_run_arguments(corpus, trained_run.parent))
    train.export(str(trained_run), train.export_formats(args), train.TASKS[args.task].family)
    return trained_run


FAMILY_MODEL = [
    "--num-layers", "1", "--hidden-dim", "32", "--num-heads", "4", "--intermediate-dim", "64",
    "--max-length", "24", "--verbose", "0", "--batch-size", "32",
]  # fmt: skip


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory):
    """A classify, a tag and an lm run of train.py on the built-in data, exported by default."""
    import train

    out = tmp_path_factory.mktemp("family_runs")
    for task, examples, epochs in (("classify", 1000, 5), ("tag", 1500, 6), ("lm", 3000, 10)):
        train.main(
            FAMILY_MODEL + ["--task", task, "--train-examples", str(examples), "--val-examples", "200",
                            "--epochs", str(epochs), "--out", str(out), "--name", task]
        )  # fmt: skip
    return out
