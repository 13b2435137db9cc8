"""TFLite conversion of an exported module: float32, float16, dynamic-int8 and int8 (calibrated).

Only TFLite's built-in ops are allowed (no Flex / SELECT_TF_OPS), plus custom
ops when asked for (tensorflow-text's kernels); conversion fails loudly
otherwise (`ExportError`).
"""

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


def representative_dataset(module, source_ids):
    """Calibration inputs for every signature, from real source sentences."""

    def generator():
        for row in source_ids:
            ids = row[None]
            yield "generate", {"encoder_token_ids": ids}
            yield "beam_search", {"encoder_token_ids": ids}
            yield "encode", {"encoder_token_ids": ids}
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


def convert(module, signatures, quantization=None, calibration_ids=None, allow_custom_ops=False, metadata=None):
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

    Every flatbuffer goes through `flatbuffer.compact`.
    """
    with tempfile.TemporaryDirectory() as directory:
        functions = {name: getattr(module, name).get_concrete_function() for name in signatures}
        tf.saved_model.save(module, directory, signatures=functions)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = allow_custom_ops
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "dynamic_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantization == "int8":
            if calibration_ids is None or not len(calibration_ids):
                raise ExportError("int8 quantization needs calibration sentences (the run's calibration.txt or --data).")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset(module, calibration_ids)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            converter._experimental_calibrate_only = True  # quantized below, with FLOAT_IN_INT8 left in float
        elif quantization is not None:
            raise ValueError(f"Unknown quantization {quantization!r}. Expected one of {QUANTIZATIONS}.")
        try:
            with warnings.catch_warnings():
                # The int8 calibrator runs TensorFlow's own (deprecated) interpreter, which warns.
                warnings.simplefilter("ignore")
                flatbuffer = converter.convert()
                if quantization == "int8":
                    from tensorflow.lite.python import convert as lite_convert

                    flatbuffer = lite_convert.mlir_quantize(flatbuffer, denylisted_ops=list(FLOAT_IN_INT8))
                return compact(flatbuffer, metadata)
        except Exception as error:
            raise ExportError(f"TFLite conversion ({quantization or 'float32'}) failed: {str(error)[-2000:]}") from error
