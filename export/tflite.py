"""TFLite (LiteRT) models: the whole greedy loop inside, built-in ops only.

One `.tflite` file per variant, each with the signatures `generate` (greedy),
`beam_search`, `encode` and `decode_step` (see `export.graphs`). Sources
are `(B, max_sequence_length)` int32, padded with 0; the batch size is free
(`resize_tensor_input`, or the signature runner does it). Only TFLite's
built-in ops are allowed (no Flex / SELECT_TF_OPS), so the plain LiteRT
interpreter runs them; conversion fails loudly otherwise.

Variants: `tflite` (float32), `tflite_float16` (float16 weights),
`tflite_dynamic_int8` (int8 weights, activations quantized on the fly),
`tflite_int8` (int8 weights and activations, calibrated on training
sentences; the attention scores' path stays float, see `FLOAT_IN_INT8`).
"""

import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from export.graphs import TranslationModule
from export.registry import register
from export.run import ExportError
from keras_transformer.layers.masks import START_ID

SIGNATURES = ("generate", "beam_search", "encode", "decode_step")
VARIANTS = {
    "tflite": "model.tflite",
    "tflite_float16": "model_float16.tflite",
    "tflite_dynamic_int8": "model_dynamic_int8.tflite",
    "tflite_int8": "model_int8.tflite",
}

# Ops the int8 variant keeps in float. Masked attention scores hold a huge
# negative value, so an int8 range calibrated over them has no resolution left
# for the real scores: every op that carries the scores into the softmax
# (scale MUL, mask SELECT_V2, RESHAPE, SOFTMAX) stays float. Measured on the
# test model: 13% of tokens equal to float32 with all ops int8, 97% without these.
# A decoding step's single query (`MultiHeadAttention._attend_one_query`) writes
# its softmax out as SUM, REDUCE_MAX, SUB, EXP and DIV over the masked scores:
# those stay float too (20% of tokens equal when they were int8).
FLOAT_IN_INT8 = ("MUL", "SELECT_V2", "RESHAPE", "SOFTMAX", "SUM", "REDUCE_MAX", "SUB", "EXP", "DIV")


def build_module(model, beam_size=4, length_penalty=0.6):
    return TranslationModule(
        model, fixed_source_length=True, freeze=True, beam_size=beam_size, length_penalty=length_penalty
    )


def encode_sentences(run, sentences):
    """Sentences as `(N, max_sequence_length)` int32 source ids (truncated, 0-padded)."""
    ids = run.source_tokenizer.tokenize(tf.constant(sentences))[:, : run.model.max_sequence_length]
    return ids.to_tensor(0, shape=[len(sentences), run.model.max_sequence_length]).numpy().astype("int32")


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


def convert(module, variant="tflite", calibration_ids=None, signatures=SIGNATURES, allow_custom_ops=False):
    """Convert `module`'s `signatures` to TFLite flatbuffer bytes.

    `allow_custom_ops` lets ops without a built-in kernel through as custom
    ops (tensorflow-text's TFLite kernels, see `export.tflite_text`).
    """
    with tempfile.TemporaryDirectory() as directory:
        functions = {name: getattr(module, name).get_concrete_function() for name in signatures}
        tf.saved_model.save(module, directory, signatures=functions)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = allow_custom_ops
        if variant == "tflite_float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif variant == "tflite_dynamic_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "tflite_int8":
            if calibration_ids is None or not len(calibration_ids):
                raise ExportError("tflite_int8 needs calibration sentences (the run's training data or --data).")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset(module, calibration_ids)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            converter._experimental_calibrate_only = True  # quantized below, with FLOAT_IN_INT8 left in float
        elif variant != "tflite":
            raise ValueError(f"Unknown TFLite variant {variant!r}. Expected one of {sorted(VARIANTS)}.")
        try:
            with warnings.catch_warnings():
                # The int8 calibrator runs TensorFlow's own (deprecated) interpreter, which warns.
                warnings.simplefilter("ignore")
                flatbuffer = converter.convert()
                if variant == "tflite_int8":
                    from tensorflow.lite.python import convert as lite_convert

                    flatbuffer = lite_convert.mlir_quantize(flatbuffer, denylisted_ops=list(FLOAT_IN_INT8))
                if variant in ("tflite_dynamic_int8", "tflite_int8"):
                    flatbuffer = share_quantization_parameters(flatbuffer)
                return flatbuffer
        except Exception as error:
            raise ExportError(f"TFLite conversion ({variant}) failed: {str(error)[-2000:]}") from error


def share_quantization_parameters(flatbuffer):
    """`flatbuffer` with each distinct set of quantization parameters stored once.

    Every signature is its own subgraph (and each loop body another one), and
    the converter gives every tensor that reads a shared int8 weight buffer its
    own copy of that weight's quantization parameters: per-channel scales
    (float32) and zero points (int64, all 0 for weights). For the 4 signatures
    of a "small" model that is ~1 MB of copies, about 8% of the dynamic-int8
    file. Flatbuffers may point many tables at one, so identical parameters
    (and identical zero-point vectors) are written once and shared; the model
    itself is unchanged.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    pack = schema.QuantizationParametersT.Pack
    offsets = {}

    def shared_pack(parameters, builder):
        if parameters.details is not None:  # custom quantization: not compared, written as is
            return pack(parameters, builder)
        fields = (parameters.min, parameters.max, parameters.scale, parameters.zeroPoint)
        key = tuple(None if f is None else (len(f), np.asarray(f).tobytes()) for f in fields)
        key += (parameters.quantizedDimension,)
        if key not in offsets:
            offsets[key] = pack(parameters, builder)
        return offsets[key]

    # Weights' zero points are int64 zeros, one per channel (they must match the scales in
    # number): tensors with as many channels share one vector of them.
    class Builder(flatbuffers.Builder):
        def __init__(self, size):
            super().__init__(size)
            self.vectors = {}

        def CreateNumpyVector(self, array):
            if array.dtype != np.int64:
                return super().CreateNumpyVector(array)
            key = (array.shape, array.tobytes())
            if key not in self.vectors:
                self.vectors[key] = super().CreateNumpyVector(array)
            return self.vectors[key]

    builder = Builder(1024)
    schema.QuantizationParametersT.Pack = shared_pack
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    finally:
        schema.QuantizationParametersT.Pack = pack
    return bytes(builder.Output())


def operators(flatbuffer, custom_only=False):
    """The op names a `.tflite` flatbuffer uses (built-in names, and custom codes)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    result = set()
    for code in model.operatorCodes:
        if code.customCode:
            result.add(code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode)
        elif not custom_only:
            result.add(names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode)))
    return sorted(result)


def refuse_flex(flatbuffer, variant):
    """Raise `ExportError` if the converted model needs TensorFlow (Flex) ops."""
    flex = [name for name in operators(flatbuffer) if name.startswith("Flex")]
    if flex:
        raise ExportError(f"{variant}: the converted model needs Flex ops {flex}.")


def _export(variant):
    def export(run, path, beam_size=4, length_penalty=0.6, calibration_sentences=None, **unused):
        module = build_module(run.model, beam_size, length_penalty)
        calibration_ids = None
        if variant == "tflite_int8":
            sentences = calibration_sentences or run.source_sentences(limit=100)
            calibration_ids = encode_sentences(run, sentences[:100])
        flatbuffer = convert(module, variant, calibration_ids)
        refuse_flex(flatbuffer, variant)
        with open(path, "wb") as f:
            f.write(flatbuffer)

    export.__name__ = f"export_{variant}"
    return export


for _variant, _filename in VARIANTS.items():
    register(_variant, _filename)(_export(_variant))


def interpreter(path, num_threads=2, xnnpack=True):
    """An `ai_edge_litert` interpreter for `path` (no Flex delegate).

    tensorflow-text's TFLite kernels are registered too, for the text-in/
    text-out variants (`export.tflite_text`); other models do not use them.
    """
    import tensorflow_text
    from ai_edge_litert.interpreter import InterpreterWithCustomOps, OpResolverType

    kwargs = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    if not os.path.isfile(path):
        raise ExportError(f"{path} does not exist.")
    return InterpreterWithCustomOps(
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS,
        model_path=path,
        num_threads=num_threads,
        **kwargs,
    )
