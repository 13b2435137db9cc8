"""The task layer without the command line: typed options, one interface, the trainer."""

import dataclasses
import json
import os

import pytest

import keras_transformer as kt
from keras_transformer.run_directory import RunDirectory
from keras_transformer.tasks import TASKS, ClassifyOptions, Task, TaskOptions, TranslateOptions
from keras_transformer.tasks.trainer import TrainingOptions, open_run, train
from keras_transformer.tasks.translate import CALIBRATION_SENTENCES

TINY = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, batch_size=64, max_length=24)


def test_every_task_implements_the_interface():
    assert sorted(TASKS) == ["classify", "lm", "pretrain-mlm", "tag", "translate"]
    for name, task in TASKS.items():
        assert issubclass(task, Task) and task.name == name and task.family and task.model_class
        assert issubclass(task.options_class, TaskOptions) and dataclasses.is_dataclass(task.options_class)
        for method in ("prepare", "build_model", "fit_arguments", "evaluate"):
            assert getattr(task, method) is not getattr(Task, method), (name, method)
    assert [name for name, task in TASKS.items() if not task.exported] == ["pretrain-mlm"]


@pytest.mark.parametrize(
    "options, match",
    [
        (lambda: TaskOptions(batch_size=0), "`batch_size` must be a positive integer"),
        (lambda: TaskOptions(preset="huge"), "Unknown preset"),
        (lambda: TranslateOptions(train_src="a.txt"), "give both `train_src` and `train_tgt`"),
        (lambda: TranslateOptions(val_tsv="v.tsv"), "validation files need training files"),
        (lambda: ClassifyOptions(freeze_layers=1), "`freeze_layers` needs `init_from`"),
        (lambda: TrainingOptions(time_limit=-1), "`time_limit` must be a positive"),
        (lambda: TrainingOptions(average_last=0), "`average_last` needs a positive"),
        (lambda: TrainingOptions(cooldown=1.0), "`cooldown` is a fraction of the run, between 0 and 1"),
        (lambda: TaskOptions(activation_dropout=1.5), r"`activation_dropout` must be in \[0, 1\)"),
    ],
)
def test_options_are_checked_when_made(options, match):
    with pytest.raises(ValueError, match=match):
        options()


def test_a_task_refuses_another_task_s_options():
    with pytest.raises(ValueError, match="takes ClassifyOptions"):
        TASKS["classify"](TranslateOptions())


def test_options_map_onto_the_architecture():
    options = TaskOptions(preset="small", num_layers=1, normalize_first=True, max_length=32, attention_dropout=0.1)
    assert options.architecture() == {**kt.models.PRESETS["small"], "num_layers": 1, "normalize_first": True,
                                      "max_sequence_length": 32, "position": "sinusoidal",
                                      "attention_dropout": 0.1}  # fmt: skip


@pytest.mark.slow
def test_trainer_runs_a_task_from_python_and_saves_calibration_sentences(tmp_path):
    task = TASKS["translate"](TranslateOptions(epochs=1, train_examples=128, val_examples=32, **TINY))
    results = train(task, open_run(tmp_path / "t"), TrainingOptions(verbose=0))
    run = RunDirectory(tmp_path / "t")
    assert json.loads((tmp_path / "t" / "evaluation.json").read_text())["token_accuracy"] == results["token_accuracy"]
    assert run.read_calibration() == task.calibration_sentences()
    assert len(run.read_calibration()) == CALIBRATION_SENTENCES
    loaded = run.load()
    assert loaded.family == "translate" and isinstance(loaded.model, kt.Transformer)
    assert not os.path.exists(run.checkpoint_dir)

    classify = TASKS["classify"](ClassifyOptions(epochs=1, train_examples=64, val_examples=32, **TINY))
    results = train(classify, open_run(tmp_path / "c"), TrainingOptions(verbose=0))
    assert 0 <= results["accuracy"] <= 1 and RunDirectory(tmp_path / "c").read_calibration() is None
    assert RunDirectory(tmp_path / "c").load().labels == classify.label_names


def test_translate_init_from_needs_text_and_keeps_the_runs_architecture():
    from keras_transformer.tasks import TranslateOptions

    with pytest.raises(ValueError, match="parallel text"):
        TranslateOptions(init_from="runs/a")
    with pytest.raises(ValueError, match="drop `num_heads`, `tie_embeddings`"):
        TranslateOptions(init_from="runs/a", train_tsv="t.tsv", num_heads=2, tie_embeddings=True)
    rates = dict(dropout=0.3, attention_dropout=0.1, activation_dropout=0.2)  # regularisation may change
    assert TranslateOptions(init_from="runs/a", train_tsv="t.tsv", **rates).activation_dropout == 0.2


def test_a_run_recorded_before_an_architecture_argument_existed_resumes_as_the_same_model():
    from keras_transformer.tasks.trainer import _with_defaults

    older = {"num_layers": 1, "hidden_dim": 32, "source_vocabulary_size": 90}  # no position_layout, no output_bias
    newer = {**older, "position_layout": "interleaved", "output_bias": False}
    assert _with_defaults(older) == _with_defaults(newer)
    assert _with_defaults(older) != _with_defaults({**older, "position_layout": "concatenated"})


def test_marian_compatible_needs_what_a_marian_model_is():
    from keras_transformer.tasks import TranslateOptions

    with pytest.raises(ValueError, match="parallel text.*SentencePiece|parallel text"):
        TranslateOptions(marian_compatible=True)
    with pytest.raises(ValueError, match="joint_vocabulary"):
        TranslateOptions(marian_compatible=True, train_tsv="t.tsv")
    with pytest.raises(ValueError, match="SentencePiece tokenizers"):
        TranslateOptions(marian_compatible=True, train_tsv="t.tsv", joint_vocabulary=True, tokenizer="wordpiece")
    with pytest.raises(ValueError, match="post-norm"):
        TranslateOptions(marian_compatible=True, train_tsv="t.tsv", joint_vocabulary=True, normalize_first=True)
    assert TranslateOptions(marian_compatible=True, train_tsv="t.tsv", joint_vocabulary=True).marian_compatible
