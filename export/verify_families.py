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
    difference (classifiers), and the median ms of a batch-1 call.
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
    if check:
        check(run, [path for path, _ in callers.values()])
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
    return rows
