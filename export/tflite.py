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
                if variant == "tflite_dynamic_int8":
                    flatbuffer = share_tied_embedding(flatbuffer)
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


def share_tied_embedding(flatbuffer):
    """A dynamic-int8 `flatbuffer` whose tied embedding is stored once, per channel.

    With tied embeddings the float32 file holds the (V, d) matrix once, but
    dynamic-range quantization writes it twice: per-tensor int8 for the lookup
    (`GATHER`, or `DEQUANTIZE` to a float table) and per-channel int8 (one
    scale per row) for the output layer (`FULLY_CONNECTED`), 2 MB each at
    "small". This points the lookups at the per-channel matrix, which is also
    the more precise one: a `DEQUANTIZE` reads it directly, and a `GATHER` of
    int8 rows is followed by its rows' scales (`GATHER` of a (V, 1) float
    table, then `MUL`). Returns `flatbuffer` unchanged when there is no such
    pair (untied embeddings) or the matrix is used any other way.
    """
    import copy

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    code_of = {}
    for index, code in enumerate(model.operatorCodes):
        code_of.setdefault(max(code.builtinCode, code.deprecatedBuiltinCode), index)

    def values(tensor):
        data = model.buffers[tensor.buffer].data
        if data is None or not len(data) or tensor.type != schema.TensorType.INT8 or tensor.quantization is None:
            return None
        if tensor.shape is None or len(tensor.shape) != 2 or tensor.quantization.scale is None:
            return None
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int8).reshape(tuple(tensor.shape))

    per_tensor, per_channel = {}, {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            ints = values(tensor)
            if ints is None:
                continue
            scales = np.asarray(tensor.quantization.scale, np.float32)
            if len(scales) == 1:
                per_tensor.setdefault(tensor.buffer, (ints, scales[0]))
            elif len(scales) == ints.shape[0] and tensor.quantization.quantizedDimension == 0:
                per_channel.setdefault(tensor.buffer, (ints, scales, tensor))
    pairs = {}
    for lookup_buffer, (ints, scale) in per_tensor.items():
        for ints_c, scales_c, tensor_c in per_channel.values():
            if ints_c.shape != ints.shape:
                continue
            error = np.abs(ints * scale - ints_c * scales_c[:, None]).max()
            if error <= 0.5 * scale + 0.5 * scales_c.max() + 1e-6:  # the same matrix, rounded twice
                pairs[lookup_buffer] = tensor_c
    if not pairs:
        return flatbuffer
    gather_code, mul_code = schema.BuiltinOperator.GATHER, schema.BuiltinOperator.MUL
    for builtin in (gather_code, mul_code):
        if builtin not in code_of:
            model.operatorCodes.append(schema.OperatorCodeT())
            model.operatorCodes[-1].builtinCode = builtin
            model.operatorCodes[-1].deprecatedBuiltinCode = min(builtin, 127)
            model.operatorCodes[-1].version = 1
            code_of[builtin] = len(model.operatorCodes) - 1
    scale_buffers = {}

    def add_tensor(subgraph, name, tensor_type, shape, signature, buffer=0):
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.buffer = name.encode(), tensor_type, buffer
        tensor.shape = np.asarray(shape, np.int32)
        tensor.shapeSignature = None if signature is None else np.asarray(signature, np.int32)
        subgraph.tensors.append(tensor)
        return len(subgraph.tensors) - 1

    def builtin_of(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    for subgraph in model.subgraphs:
        rewritten = []
        for index, tensor in enumerate(subgraph.tensors):
            if tensor.buffer not in pairs or values(tensor) is None:
                continue
            target = pairs[tensor.buffer]
            users = [op for op in subgraph.operators if index in op.inputs]
            if any(builtin_of(op) not in (schema.BuiltinOperator.DEQUANTIZE, gather_code) for op in users):
                return flatbuffer
            for op in users:
                if builtin_of(op) == gather_code and list(op.inputs).index(index) != 0:
                    return flatbuffer
            rewritten.append((index, target, users))
        for index, target, users in rewritten:
            tensor = subgraph.tensors[index]
            tensor.buffer, tensor.quantization = target.buffer, copy.deepcopy(target.quantization)
            for op in users:
                if builtin_of(op) != gather_code:
                    continue  # DEQUANTIZE now reads the per-channel matrix as is
                gathered = subgraph.tensors[op.outputs[0]]
                consumers = [other for other in subgraph.operators if op.outputs[0] in other.inputs]
                if len(consumers) != 1 or builtin_of(consumers[0]) != schema.BuiltinOperator.DEQUANTIZE:
                    return flatbuffer
                dequantize = consumers[0]
                # The gathered rows as raw integers (scale 1), times their rows' scales.
                gathered.quantization = schema.QuantizationParametersT()
                gathered.quantization.scale = np.ones(1, np.float32)
                gathered.quantization.zeroPoint = np.zeros(1, np.int64)
                output_index = int(dequantize.outputs[0])
                output = subgraph.tensors[output_index]
                raw = add_tensor(subgraph, "embedding_rows_unscaled", 0, output.shape, output.shapeSignature)
                dequantize.outputs = np.asarray([raw], np.int32)
                if target.buffer not in scale_buffers:
                    model.buffers.append(schema.BufferT())
                    scales = np.asarray(target.quantization.scale, np.float32).reshape(-1, 1)
                    model.buffers[-1].data = np.frombuffer(scales.tobytes(), np.uint8)
                    scale_buffers[target.buffer] = (len(model.buffers) - 1, scales.shape)
                buffer, shape = scale_buffers[target.buffer]
                table = add_tensor(subgraph, "embedding_row_scales", 0, shape, None, buffer)
                ids = subgraph.tensors[op.inputs[1]]
                ids_signature = None if ids.shapeSignature is None else list(ids.shapeSignature) + [1]
                row_scales = add_tensor(subgraph, "embedding_rows_scale", 0, list(ids.shape) + [1], ids_signature)
                gather = schema.OperatorT(opcodeIndex=code_of[gather_code])
                gather.inputs, gather.outputs = np.asarray([table, op.inputs[1]], np.int32), np.asarray([row_scales], np.int32)
                gather.builtinOptionsType = schema.BuiltinOptions.GatherOptions
                gather.builtinOptions = schema.GatherOptionsT()
                mul = schema.OperatorT(opcodeIndex=code_of[mul_code])
                mul.inputs = np.asarray([raw, row_scales], np.int32)
                mul.outputs = np.asarray([output_index], np.int32)
                mul.builtinOptionsType = schema.BuiltinOptions.MulOptions
                mul.builtinOptions = schema.MulOptionsT()
                position = subgraph.operators.index(dequantize)
                subgraph.operators[position + 1 : position + 1] = [gather, mul]
    for lookup_buffer in pairs:
        model.buffers[lookup_buffer].data = None
    return flatbuffer_utils.convert_object_to_bytearray(model)


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
