"""TFLite conversion of an exported module: float32, float16, dynamic-int8 and int8 (calibrated).

Only TFLite's built-in ops are allowed (no Flex / SELECT_TF_OPS), plus custom
ops when asked for (tensorflow-text's kernels); conversion fails loudly
otherwise (`ExportError`).
"""

import os
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from .errors import ExportError
from .flatbuffer import compact
from keras_transformer.data.tokenizers import model_ids
from keras_transformer.vocabulary import START_ID

QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
CALIBRATION_SENTENCES = 100

# Ops the int8 variant keeps in float. Masked attention scores hold a huge
# negative value, so an int8 range calibrated over them has no resolution left
# for the real scores: every op that carries the scores into the softmax
# (scale MUL, mask SELECT_V2, RESHAPE, SOFTMAX) stays float. Measured on the
# test model: 13% of tokens equal to float32 with all ops int8, 97% without these.
# A decoding step's single query (`MultiHeadAttention._attend_one_query`) writes
# its softmax out as SUM, REDUCE_MAX, SUB, EXP and DIV over the masked scores:
# those stay float too (20% of tokens equal when they were int8).
FLOAT_IN_INT8 = ("MUL", "SELECT_V2", "RESHAPE", "SOFTMAX", "SUM", "REDUCE_MAX", "SUB", "EXP", "DIV")


def encode_sentences(run, sentences):
    """Sentences as `(N, max_sequence_length)` int32 source ids (truncated, 0-padded)."""
    pieces = run.source_tokenizer.tokenize(tf.constant(sentences))
    return model_ids(run.source_tokenizer, pieces, run.model.max_sequence_length, full=True).numpy().astype("int32")


def representative_dataset(module, source_ids, only=None):
    """Calibration inputs for every signature (or the signature `only`), from real source sentences."""

    def generator():
        for name, inputs in every_signature():
            if only is None or name == only:
                yield name, inputs

    def every_signature():
        for row in source_ids:
            ids = row[None]
            yield "generate", {"encoder_token_ids": ids}
            yield "beam_search", {"encoder_token_ids": ids}
            yield "encode", {"encoder_token_ids": ids}
            if only not in (None, "decode_step"):
                continue
            caches = module.encode(tf.constant(ids))
            token = np.array([[START_ID]], "int32")
            for index in range(3):
                inputs = {
                    "token_ids": token,
                    "index": np.array(index, "int32"),
                    "self_attention_cache": caches["self_attention_cache"].numpy(),
                    "cross_attention_cache": caches["cross_attention_cache"].numpy(),
                    "encoder_token_ids": ids,
                }
                yield "decode_step", inputs
                step = module.decode_step(**{k: tf.constant(v) for k, v in inputs.items()})
                caches = {**caches, "self_attention_cache": step["self_attention_cache"]}
                token = np.argmax(step["logits"].numpy(), -1).astype("int32")[:, None]

    return generator


ISOLATE_PARAMETERS = 20_000_000  # from this size on, each signature is converted in a child process
CHILD = "import sys; from export.converter import _child; sys.exit(_child(*sys.argv[1:]))"


def convert(
    module, signatures, quantization=None, calibration_ids=None, allow_custom_ops=False, metadata=None, isolate=None
):
    """Convert `module`'s `signatures` to TFLite flatbuffer bytes.

    Args:
        module: a `tf.Module` with the signatures as `tf.function`s.
        signatures: the names of the functions to convert.
        quantization: `None` (float32), `"float16"` (weights),
            `"dynamic_int8"` (weights; activations quantized on the fly) or
            `"int8"` (weights and activations, calibrated on
            `calibration_ids`; `FLOAT_IN_INT8` ops stay float).
        calibration_ids: `(N, L)` source ids (`"int8"` only).
        allow_custom_ops: let ops without a built-in kernel through as
            custom ops (tensorflow-text's TFLite kernels, see
            `export.tflite_text`).

        metadata: `{name: bytes}` written into the file's metadata
            (`export.pairing`'s record of the run).
        isolate: convert each signature in a child process (see
            `_convert_in_child`); by default for a model of
            `ISOLATE_PARAMETERS` parameters or more with several signatures.

    Every flatbuffer goes through `flatbuffer.compact`. Each signature is
    converted on its own and the parts merged (`flatbuffer.merge`): the
    converter's memory grows with the signatures it holds at once.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}. Expected one of {QUANTIZATIONS}.")
    if quantization == "int8" and (calibration_ids is None or not len(calibration_ids)):
        raise ExportError("int8 quantization needs calibration sentences (the run's calibration.txt or --data).")
    isolate = len(signatures) > 1 and _parameters(module) >= ISOLATE_PARAMETERS if isolate is None else isolate
    parts = []
    for name in signatures:
        with tempfile.TemporaryDirectory() as directory:
            saved = os.path.join(directory, "saved_model")
            tf.saved_model.save(_only(module), saved, signatures={name: getattr(module, name).get_concrete_function()})
            dataset = None
            if quantization == "int8":
                dataset = list(representative_dataset(module, calibration_ids, only=name)())
            if isolate:
                parts.append(_convert_in_child(directory, saved, name, quantization, dataset, allow_custom_ops))
                continue
            try:
                parts.append(_convert_saved(saved, name, quantization, dataset, allow_custom_ops))
            except Exception as error:
                raise ExportError(_failed(name, quantization, str(error))) from error
    return compact(parts if len(parts) > 1 else parts[0], metadata)


def _failed(name, quantization, message):
    return f"TFLite conversion ({quantization or 'float32'}) of `{name}` failed: {message[-2000:]}"


def _parameters(module):
    model = getattr(module, "model", None)
    return 0 if model is None else sum(int(np.prod(v.shape)) for v in model.variables)


def _convert_saved(saved, name, quantization, dataset, allow_custom_ops):
    """Flatbuffer bytes (not compacted) of the signature `name` of the SavedModel at `saved`."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[name])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = allow_custom_ops
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(dataset)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter._experimental_calibrate_only = True  # quantized below, with FLOAT_IN_INT8 left in float
    with warnings.catch_warnings():
        # The int8 calibrator runs TensorFlow's own (deprecated) interpreter, which warns.
        warnings.simplefilter("ignore")
        flatbuffer = converter.convert()
        if quantization == "int8":
            from tensorflow.lite.python import convert as lite_convert

            flatbuffer = lite_convert.mlir_quantize(flatbuffer, denylisted_ops=list(FLOAT_IN_INT8))
    return flatbuffer


def _convert_in_child(directory, saved, name, quantization, dataset, allow_custom_ops):
    """`_convert_saved` in a fresh Python process: all its memory is returned when it exits.

    The converter keeps most of what it allocates until the process ends
    (about 10 GB for one signature of a Marian-base model, 23 GB after its
    four signatures in one process); a child per signature keeps the peak
    at one signature's.
    """
    if dataset is not None:
        with open(os.path.join(directory, "calibration.pkl"), "wb") as f:
            pickle.dump(dataset, f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    arguments = [directory, saved, name, quantization or "", "1" if allow_custom_ops else ""]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments], env=environment, capture_output=True, text=True
    )
    output = os.path.join(directory, "model.tflite")
    if done.returncode != 0 or not os.path.isfile(output):
        message = done.stderr.strip()
        if done.returncode < 0:  # killed: the kernel's out-of-memory killer sends SIGKILL
            message = f"the converter process was killed by signal {-done.returncode} (out of memory?) {message}"
        message = message or f"the converter process ended with status {done.returncode}"
        raise ExportError(_failed(name, quantization, message))
    with open(output, "rb") as f:
        return f.read()


def _child(directory, saved, name, quantization, allow_custom_ops):
    if allow_custom_ops:
        import tensorflow_text  # noqa: F401  (registers the ops the SavedModel holds)
    dataset = None
    if os.path.isfile(os.path.join(directory, "calibration.pkl")):
        with open(os.path.join(directory, "calibration.pkl"), "rb") as f:
            dataset = pickle.load(f)
    try:
        flatbuffer = _convert_saved(saved, name, quantization or None, dataset, bool(allow_custom_ops))
    except Exception as error:
        print(str(error)[-2000:], file=sys.stderr)
        return 1
    with open(os.path.join(directory, "model.tflite"), "wb") as f:
        f.write(flatbuffer)
    return 0


def _only(module):
    """What the converter's SavedModel holds: a bare `tf.Module` with the variables the signatures read.

    The signatures are saved with it (`tf.saved_model.save(..., signatures=)`),
    each once. Saving `module` itself wrote every function it has
    (`generate`, `beam_search`, `encode`, `decode_step`, `logits`, ...) and,
    its weights frozen, a copy of them inside each, plus its model's
    variables: seven copies of a small model's weights, and for a
    74M-parameter Marian-base model more than the machine's 24 GB. A frozen
    module's weights are variables of its own (`frozen_variables`), read
    where each signature starts, not constants traced into each function.
    """
    holder = tf.Module()
    frozen = module.frozen_variables() if hasattr(module, "frozen_variables") else None
    # The variables the functions read, saved once; the converter makes constants of them.
    holder.variables_read = list(module.model.variables) if frozen is None else frozen
    return holder
