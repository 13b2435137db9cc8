"""Classify, tag and lm artifacts against the Keras model (`python -m export.verify` on such runs)."""

import os
import time

import numpy as np
import tensorflow as tf

from .base import artifact_size
from .interpreter import interpreter
from .saved_model import latest_version
from .tflite import VARIANTS
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS, START_ID

# The text-in files of classify and tag runs (`export.tflite_text`): format -> file name.
TEXT_FORMATS = {"tflite_text": "model_text.tflite", "tflite_text_dynamic_int8": "model_text_dynamic_int8.tflite"}

TFLITE_FORMATS = ("tflite", "tflite_float16", "tflite_dynamic_int8")
COLUMNS = [
    ("artifact", "{}"), ("size_mb", "{:.3f}"), ("agreement", "{:.2%}"), ("max_probability_difference", "{:.2e}"),
    ("ms_batch_1", "{:.3f}"),
]  # fmt: skip


def example_inputs(run, count=32, seed=0):
    """`(count, L)` int32 ids for parity checks, shaped as the run's model reads them.

    Encoder runs: `[start] random tokens [end]` of random lengths; language
    models: prompts of 0 to 4 random tokens.
    """
    rng = np.random.default_rng(seed)
    length = run.max_length
    vocabulary = run.source_tokenizer.vocabulary_size
    ids = np.zeros((count, length), "int32")
    for row in range(count):
        if run.family == "lm":
            n = int(rng.integers(0, 5))
            ids[row, :n] = rng.integers(len(RESERVED_TOKENS), vocabulary, size=n)
        else:
            n = int(rng.integers(1, length - 1))
            ids[row, : n + 2] = [START_ID, *rng.integers(len(RESERVED_TOKENS), vocabulary, size=n), END_ID]
    return ids


def example_texts(run, count=64, seed=0):
    """`count` texts for the text-in files: the run's tokens written out, cased and not, blank ones first."""
    rng = np.random.default_rng(seed)
    vocabulary = run.source_tokenizer.vocabulary_size
    texts = ["", "   "]
    while len(texts) < count:
        ids = rng.integers(len(RESERVED_TOKENS), vocabulary, size=(1, int(rng.integers(1, run.max_length))))
        text = run.source_tokenizer.detokenize(ids.astype("int32")).numpy()[0].decode("utf-8", "replace")
        texts.append(text.upper() if rng.random() < 0.2 else text)
    return texts[:count]


def text_reference(run, texts):
    """The Keras model's labels (classify) or tags per word (tag) of `texts`, read with the run's tokenizer."""
    import keras

    from keras_transformer.data import families

    if run.family == "classify":
        ids = families.encoder_inputs(run.source_tokenizer, texts, run.max_length)
        return [run.labels[i] for i in keras.ops.convert_to_numpy(run.model(ids)).argmax(-1)]
    sentences = [text.split() for text in texts]
    words = [sentence[: run.max_length - 2] for sentence in sentences]
    rows = [[START_ID, *row, END_ID] for row in families.word_ids(run.source_tokenizer, words)]
    ids = np.zeros((len(rows), max(map(len, rows))), "int32")
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    logits = keras.ops.convert_to_numpy(run.model(ids))[:, 1:, 1:]  # the padding tag is never predicted
    return [[run.labels[int(tag) + 1] for tag in logits[i, : len(row)].argmax(-1)] for i, row in enumerate(words)]


def verify_text(run, export_dir, count=64, threads=2, timed_calls=20):
    """Rows of a classify/tag run's text-in files: the share of texts labelled (or tagged) as Keras does."""
    paths = {name: os.path.join(export_dir, file) for name, file in TEXT_FORMATS.items()}
    paths = {name: path for name, path in paths.items() if os.path.isfile(path)}
    if run.family not in ("classify", "tag") or not paths:
        return []
    texts = example_texts(run, count)
    reference = text_reference(run, texts)
    signature, output = ("classify_text", "label") if run.family == "classify" else ("tag_text", "tags")
    rows = []
    for name, path in paths.items():
        runner = interpreter(path, num_threads=threads).get_signature_runner(signature)

        def call(batch, runner=runner):
            return runner(text=np.array([text.encode("utf-8") for text in batch], dtype=object))[output]

        got = call(texts)
        if run.family == "classify":
            equal = [label.decode("utf-8") == expected for label, expected in zip(got, reference)]
        else:
            equal = [[tag.decode("utf-8") for tag in row[: len(expected)]] == expected for row, expected in
                     zip(got, reference)]  # fmt: skip
        times = []
        for text in texts[2 : 2 + timed_calls]:
            start = time.perf_counter()
            call([text])
            times.append(1000 * (time.perf_counter() - start))
        rows.append({"artifact": name, "size_mb": round(artifact_size(path) / 1e6, 3),
                     "agreement": float(np.mean(equal)), "max_probability_difference": None,
                     "ms_batch_1": round(float(np.median(times)), 3)})  # fmt: skip
    return rows


def _reference(run, ids):
    """What the Keras model gives for `ids`: probabilities, tag ids or generated ids."""
    import keras

    if run.family == "classify":
        return keras.ops.convert_to_numpy(keras.ops.softmax(run.model(ids)))
    if run.family == "tag":
        logits = keras.ops.convert_to_numpy(run.model(ids))
        return np.where(ids == PAD_ID, 0, logits[:, :, 1:].argmax(-1) + 1)
    return keras.ops.convert_to_numpy(run.model.generate(ids, max_length=ids.shape[1]))


def _agreement(family, reference, outputs, ids):
    if family == "classify":
        return float(np.mean(outputs.argmax(-1) == reference.argmax(-1))), float(np.abs(outputs - reference).max())
    if family == "tag":
        real = ids != PAD_ID
        return float(np.mean(outputs[real] == reference[real])), None
    return float(np.mean(outputs == reference)), None


def verify(run, export_dir, count=64, threads=2, timed_calls=20, check=None):
    """Each exported artifact of a classify/tag/lm run against the Keras model.

    `check(run, paths)`, when given, is called on the artifacts' paths
    before anything runs (`export.verify.check_paired`).

    Returns rows: artifact, `size_mb`, agreement (classes, tags at real
    positions, or generated tokens equal to Keras's), the largest probability
    difference (classifiers), and the median ms of a batch-1 call. A
    classify or tag run's text-in files are compared on texts
    (`verify_text`): their agreement is the share of texts labelled or
    tagged as the run's tokenizer and Keras model do.
    """
    ids = example_inputs(run, count)
    signature, output = {"classify": ("classify", "probabilities"), "tag": ("tag", "tag_ids"),
                         "lm": ("generate", "token_ids")}[run.family]  # fmt: skip
    argument = "prompt_ids" if run.family == "lm" else "token_ids"
    reference = _reference(run, ids)
    callers = {}
    saved_model = os.path.join(export_dir, "saved_model")
    if os.path.isdir(saved_model):
        saved_model = latest_version(saved_model)
        function = tf.saved_model.load(saved_model).signatures[signature]
        callers["saved_model"] = (saved_model, lambda x: function(**{argument: tf.constant(x)})[output].numpy())
    for variant in TFLITE_FORMATS:
        path = os.path.join(export_dir, VARIANTS[variant])
        if os.path.isfile(path):
            runner = interpreter(path, num_threads=threads).get_signature_runner(signature)
            callers[variant] = (path, lambda x, runner=runner: runner(**{argument: x})[output])
    text_paths = [os.path.join(export_dir, file) for file in TEXT_FORMATS.values()]
    if check:
        check(run, [path for path, _ in callers.values()] + [path for path in text_paths if os.path.isfile(path)])
    rows = [{"artifact": "keras", "size_mb": None, "agreement": 1.0, "max_probability_difference": 0.0}]
    for name, (path, call) in callers.items():
        agreement, difference = _agreement(run.family, reference, call(ids), ids)
        times = []
        for row in range(min(timed_calls, count)):
            start = time.perf_counter()
            call(ids[row : row + 1])
            times.append(1000 * (time.perf_counter() - start))
        rows.append({"artifact": name, "size_mb": round(artifact_size(path) / 1e6, 3), "agreement": agreement,
                     "max_probability_difference": difference, "ms_batch_1": round(float(np.median(times)), 3)})  # fmt: skip
    return rows + verify_text(run, export_dir, count, threads, timed_calls)
