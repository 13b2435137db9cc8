"""Export of classifiers, taggers and language models: SavedModel and TFLite equal Keras."""

import os

import numpy as np
import pytest

import keras_transformer as kt
from tests.test_case import to_numpy

pytestmark = pytest.mark.slow

def load(family_runs, task):
    from export import Run

    return Run(str(family_runs / task))


def tflite_runner(family_runs, task, signature, variant="model.tflite"):
    from export.interpreter import interpreter

    return interpreter(str(family_runs / task / "export" / variant)).get_signature_runner(signature)


def test_default_formats_and_signatures(family_runs):
    from export.flatbuffer import operators
    from export.interpreter import interpreter

    expected = {"classify": {"classify"}, "tag": {"tag"}, "lm": {"generate", "logits"}}
    for task, signatures in expected.items():
        names = set(os.listdir(family_runs / task / "export"))
        assert names == {"saved_model", "model.tflite", "model_float16.tflite", "model_dynamic_int8.tflite"}
        for variant in ("model.tflite", "model_float16.tflite", "model_dynamic_int8.tflite"):
            path = str(family_runs / task / "export" / variant)
            assert set(interpreter(path).get_signature_list()) == signatures
            with open(path, "rb") as f:
                assert not [op for op in operators(f.read()) if op.startswith("Flex")]


def test_classifier_parity(family_runs):
    import tensorflow as tf

    from export.verify_families import example_inputs

    run = load(family_runs, "classify")
    ids = example_inputs(run)
    expected = to_numpy(keras_softmax(run.model(ids)))
    saved = tf.saved_model.load(str(family_runs / "classify" / "export" / "saved_model" / "1"))
    np.testing.assert_allclose(saved.signatures["classify"](token_ids=tf.constant(ids[:, :12]))["probabilities"],
                               to_numpy(keras_softmax(run.model(ids[:, :12]))), atol=1e-5)  # fmt: skip
    classify = tflite_runner(family_runs, "classify", "classify")
    np.testing.assert_allclose(classify(token_ids=ids)["probabilities"], expected, atol=1e-5)
    for variant in ("model_float16.tflite", "model_dynamic_int8.tflite"):
        probabilities = tflite_runner(family_runs, "classify", "classify", variant)(token_ids=ids)["probabilities"]
        assert np.mean(probabilities.argmax(-1) == expected.argmax(-1)) >= 0.9
    # Text in, label out: equal to the Keras model on the run's own tokenization.
    from keras_transformer.data.families import encoder_inputs
    from keras_transformer.data.synthetic_language import SyntheticLanguage

    texts = SyntheticLanguage().texts(8, seed=99) + ["", "zzz unknown words"]
    outputs = saved.signatures["classify_text"](text=tf.constant(texts))
    keras_ids = encoder_inputs(run.source_tokenizer, texts, run.model.backbone.max_sequence_length)
    keras_labels = [run.labels[i] for i in to_numpy(run.model(keras_ids)).argmax(-1)]
    assert [label.decode() for label in outputs["label"].numpy()] == keras_labels


@pytest.mark.parametrize("task, output", [("classify", "label"), ("tag", "tags")])
def test_text_tflite_asked_for_by_name_labels_as_the_saved_model(family_runs, task, output, tmp_path):
    import tensorflow as tf
    import tensorflow_text

    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    from export import export_run
    from keras_transformer.data.synthetic_language import SyntheticLanguage

    written = export_run(str(family_runs / task), ["tflite_text"], out=str(tmp_path), log=None)
    texts = SyntheticLanguage().texts(40, seed=98) + ["", "  ", "zzz unknown words"]
    saved = tf.saved_model.load(str(family_runs / task / "export" / "saved_model" / "1"))
    expected = saved.signatures[f"{task}_text"](text=tf.constant(texts))[output].numpy()
    interpreter = InterpreterWithCustomOps(
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS, model_path=written["tflite_text"]
    )
    got = interpreter.get_signature_runner(f"{task}_text")(text=np.array(texts))[output]
    np.testing.assert_array_equal(got, expected)
    # export.verify's rows for the text file: texts labelled as the run's tokenizer and Keras model label them.
    from export.run import Run
    from export.verify_families import verify

    run = Run(str(family_runs / task))
    rows = {row["artifact"]: row for row in verify(run, str(tmp_path), count=40, timed_calls=3)}
    assert rows["tflite_text"]["agreement"] == 1.0 and rows["tflite_text"]["ms_batch_1"] > 0
    kept = 0 if task == "classify" else 1  # the tagger's padding tag stays first
    run.labels = run.labels[:kept] + run.labels[kept:][::-1]  # names the file does not give: caught
    assert verify(run, str(tmp_path), count=40, timed_calls=1)[-1]["agreement"] < 0.5


def keras_softmax(logits):
    import keras

    return keras.ops.softmax(logits)


def test_tagger_parity(family_runs):
    import tensorflow as tf

    from export.verify_families import example_inputs

    run = load(family_runs, "tag")
    ids = example_inputs(run)
    logits = to_numpy(run.model(ids))
    expected = np.where(ids == 0, 0, logits[:, :, 1:].argmax(-1) + 1)
    np.testing.assert_array_equal(tflite_runner(family_runs, "tag", "tag")(token_ids=ids)["tag_ids"], expected)
    saved = tf.saved_model.load(str(family_runs / "tag" / "export" / "saved_model" / "1"))
    np.testing.assert_array_equal(saved.signatures["tag"](token_ids=tf.constant(ids))["tag_ids"], expected)
    words, tags, _ = kt.data.SyntheticLanguage().sample(6, seed=98)
    outputs = saved.signatures["tag_text"](text=tf.constant([" ".join(w) for w in words]))["tags"].numpy()
    predicted = [[t.decode() for t in row[: len(w)]] for row, w in zip(outputs, words)]
    from keras_transformer.data.families import tagging_data

    keras_ids, _ = tagging_data(run.source_tokenizer, words, tags, run.labels, 24)
    keras_tags = to_numpy(run.model(keras_ids))[:, 1:, 1:].argmax(-1) + 1
    assert predicted == [[run.labels[i] for i in row[: len(w)]] for row, w in zip(keras_tags, words)]
    assert all(t == b"" for row, w in zip(outputs, words) for t in row[len(w) :])


def test_language_model_generate_parity(family_runs):
    import tensorflow as tf

    from export.verify_families import example_inputs

    run = load(family_runs, "lm")
    prompts = example_inputs(run, count=8)
    expected = to_numpy(run.model.generate(prompts[:, :4], max_length=24))
    generate = tflite_runner(family_runs, "lm", "generate")
    np.testing.assert_array_equal(generate(prompt_ids=prompts)["token_ids"], expected)
    np.testing.assert_array_equal(generate(prompt_ids=prompts[:1])["token_ids"], expected[:1])
    saved = tf.saved_model.load(str(family_runs / "lm" / "export" / "saved_model" / "1"))
    np.testing.assert_array_equal(saved.signatures["generate"](prompt_ids=tf.constant(prompts[:, :4]))["token_ids"],
                                  expected)  # fmt: skip
    assert (expected == kt.END_ID).any(1).mean() > 0.75  # generations end
    texts = saved.signatures["generate_text"](text=tf.constant(["the", ""]))["text"].numpy()
    assert texts[0].decode().startswith("the ") and texts[1]
    int8 = tflite_runner(family_runs, "lm", "generate", "model_dynamic_int8.tflite")(prompt_ids=prompts)["token_ids"]
    assert np.mean(int8 == expected) > 0.5


def test_mismatched_family_directory_is_refused(family_runs, tmp_path):
    import shutil

    from export import ExportError, Run, export_run

    broken = tmp_path / "classify"
    shutil.copytree(family_runs / "classify", broken)
    with pytest.raises(ExportError, match="no \\['marian'\\] export"):
        export_run(str(broken), ["marian"])
    config = (broken / "config.json").read_text().replace('"positive"', '"good", "extra"')
    (broken / "config.json").write_text(config)
    with pytest.raises(ExportError, match="labels"):
        Run(str(broken))


@pytest.mark.parametrize("task", ["classify", "tag", "lm"])
def test_verify_reports_every_artifact(family_runs, task, tmp_path):
    from export import verify

    rows = verify.main(["--model", str(family_runs / task), "--limit", "16", "--json", str(tmp_path / "v.json")])
    assert [row["artifact"] for row in rows] == [
        "keras", "saved_model", "tflite", "tflite_float16", "tflite_dynamic_int8"
    ]  # fmt: skip
    assert all(row["agreement"] == 1.0 for row in rows[:3]) and rows[4]["size_mb"] < rows[2]["size_mb"]
    assert (tmp_path / "v.json").exists()


@pytest.mark.parametrize("task", ["classify", "tag", "lm"])
def test_run_tflite_prints_what_the_saved_model_text_signature_gives(family_runs, task, capsys):
    import tensorflow as tf

    from export.run_tflite import main
    from keras_transformer.data.synthetic_language import SyntheticLanguage

    texts = SyntheticLanguage().texts(6, seed=97) + [""]
    main(["--model", str(family_runs / task), *texts])
    lines = capsys.readouterr().out.split("\n")[: len(texts)]
    saved = tf.saved_model.load(str(family_runs / task / "export" / "saved_model" / "1"))
    signature = {"classify": "classify_text", "tag": "tag_text", "lm": "generate_text"}[task]
    outputs = saved.signatures[signature](text=tf.constant(texts))
    if task == "classify":
        expected = [f"{label.decode()}\t{p.max():.4f}" for label, p in
                    zip(outputs["label"].numpy(), outputs["probabilities"].numpy())]  # fmt: skip
    elif task == "tag":
        expected = [" ".join(t.decode() for t in row if t) for row in outputs["tags"].numpy()]
    else:
        expected = [text.decode() for text in outputs["text"].numpy()]
    assert lines == expected


def test_export_cli_reexports_a_family_run(family_runs, tmp_path):
    from export.__main__ import main

    written = main(["--model", str(family_runs / "tag"), "--out", str(tmp_path)])
    assert sorted(written) == ["saved_model", "tflite", "tflite_dynamic_int8", "tflite_float16"]


@pytest.mark.reliability
def test_ids_outside_the_vocabulary_refused_by_saved_model_and_flagged_by_tflite(family_runs):
    import tensorflow as tf

    from export.verify_families import example_inputs

    for task, signature, argument in (("classify", "classify", "token_ids"), ("tag", "tag", "token_ids"),
                                      ("lm", "logits", "token_ids"), ("lm", "generate", "prompt_ids")):  # fmt: skip
        run = load(family_runs, task)
        vocabulary = getattr(run.model, "backbone", run.model).vocabulary_size
        ids = example_inputs(run)[:2].copy()
        ids[1, 1] = -5
        saved = tf.saved_model.load(str(family_runs / task / "export" / "saved_model" / "1"))
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{argument}.*\[0, {vocabulary}\)"):
            saved.signatures[signature](**{argument: tf.constant(ids)})
        outputs = tflite_runner(family_runs, task, signature)(**{argument: ids})
        np.testing.assert_array_equal(outputs["out_of_range_ids"], [0, 1], err_msg=f"{task} {signature}")
