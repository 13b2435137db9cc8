"""Passes over TFLite flatbuffers: compaction, the ops a model uses, float weights for diagnostics."""

import numpy as np

from .errors import ExportError


def compact(flatbuffer, metadata=None):
    """`flatbuffer` with shared buffers and quantization parameters, without debug names.

    `flatbuffer` may also be a list of flatbuffers, each converted from some
    signatures of one module: they are merged into one model holding every
    signature (`merge`), then compacted.

    `metadata` (`{name: bytes}`) adds entries to the model's metadata (see
    `export.pairing`).

    Every signature is its own subgraph (and each loop body another one), and
    the converter gives every tensor that reads a shared int8 weight buffer its
    own copy of that weight's quantization parameters: per-channel scales
    (float32) and zero points (int64, all 0 for weights). For the 4 signatures
    of a "small" model that is ~1 MB of copies, about 8% of the dynamic-int8
    file. Flatbuffers may point many tables at one, so identical parameters
    (and identical zero-point vectors) are written once and shared; the model
    itself is unchanged.

    Constant buffers with the same bytes are merged too (every tensor
    reading one points at the first; the others are left empty): a tied
    embedding table, quantized per channel for the output layer and looked
    up as the same int8 rows (`module.Int8Embeddings`), is stored once.

    Names of intermediate tensors (debug information: TensorFlow's op
    paths, ~130 kB for the 4 signatures of a "small" model) are dropped;
    the signatures' inputs and outputs keep theirs, and signatures are
    found by their `SignatureDef` keys as before.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    if isinstance(flatbuffer, (list, tuple)):
        model = merge([flatbuffer_utils.convert_bytearray_to_object(bytearray(part)) for part in flatbuffer])
    else:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    _share_identical_buffers(model)
    _strip_intermediate_names(model)
    for name, data in (metadata or {}).items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers)
        model.buffers.append(buffer)
        model.metadata = [*(model.metadata or []), entry]
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


def merge(models):
    """One flatbuffer model object holding the subgraphs and signatures of every model of `models`.

    The converter's memory grows with every signature it converts at once
    (each holds its own frozen copy of the weights): a Marian-base model's
    four translation signatures need more than 24 GB together, about 10 GB
    each alone. Converted one at a time, they are joined here: subgraphs,
    buffers and operator codes appended and every index into them moved
    (tensors' buffers, operators' codes, control flow's subgraph indices,
    signatures' subgraphs). The weights each signature repeats are merged
    afterwards by `_share_identical_buffers`. The metadata is the first
    model's, with the highest `min_runtime_version` of all.
    """
    merged = models[0]
    versions = [_runtime_version(model) for model in models]
    key = lambda code: (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)  # noqa: E731
    known = {key(code): index for index, code in enumerate(merged.operatorCodes)}
    for model in models[1:]:
        codes = []
        for code in model.operatorCodes:
            if key(code) not in known:
                known[key(code)] = len(merged.operatorCodes)
                merged.operatorCodes.append(code)
            codes.append(known[key(code)])
        metadata_buffers = {entry.buffer for entry in model.metadata or ()}
        buffers = {}
        for index, buffer in enumerate(model.buffers):
            if index == 0:  # the empty buffer every tensor without data points at
                buffers[0] = 0
            elif index not in metadata_buffers:
                buffers[index] = len(merged.buffers)
                merged.buffers.append(buffer)
        offset = len(merged.subgraphs)
        for subgraph in model.subgraphs:
            for tensor in subgraph.tensors:
                tensor.buffer = buffers[tensor.buffer]
            for op in subgraph.operators:
                op.opcodeIndex = codes[op.opcodeIndex]
                for options in (op.builtinOptions, getattr(op, "builtinOptions2", None)):
                    _move_subgraph_indices(options, offset)
            merged.subgraphs.append(subgraph)
        for signature in model.signatureDefs or ():
            signature.subgraphIndex += offset
            merged.signatureDefs.append(signature)
    versions = [version for version in versions if version is not None]
    if versions:
        for entry in merged.metadata or ():
            if _name(entry.name) == "min_runtime_version":
                text = ".".join(map(str, max(versions))).encode()
                merged.buffers[entry.buffer].data = np.frombuffer(text.ljust(16, b"\0"), np.uint8)
    return merged


def _name(name):
    return name.decode() if isinstance(name, bytes) else name


def _runtime_version(model):
    """A model's `min_runtime_version` metadata as a tuple of ints, or `None`."""
    for entry in model.metadata or ():
        if _name(entry.name) == "min_runtime_version":
            text = bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8)).split(b"\0")[0].decode()
            try:
                return tuple(int(part) for part in text.split("."))
            except ValueError:
                return None
    return None


def _move_subgraph_indices(options, offset):
    """Add `offset` to every subgraph index an operator's options hold (While, If, CallOnce, ...)."""
    if options is None:
        return
    for name, value in vars(options).items():
        if name.endswith("SubgraphIndex") or name == "subgraph":
            setattr(options, name, value + offset)
        elif name.endswith("SubgraphIndices") and value is not None:
            setattr(options, name, [index + offset for index in value])


def _share_identical_buffers(model):
    """Point every tensor at the first buffer holding the same bytes; empty the others."""
    first, duplicates = {}, {}
    for index, buffer in enumerate(model.buffers):
        if buffer.data is None or len(buffer.data) < 1024:  # small ones: not worth a look
            continue
        key = np.asarray(buffer.data).tobytes()
        duplicates[index] = first.setdefault(key, index)
    duplicates = {index: kept for index, kept in duplicates.items() if index != kept}
    if not duplicates:
        return
    kept_by_metadata = {entry.buffer for entry in model.metadata or ()}
    duplicates = {index: kept for index, kept in duplicates.items() if index not in kept_by_metadata}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = duplicates.get(tensor.buffer, tensor.buffer)
    for index in duplicates:
        model.buffers[index].data = None


def _strip_intermediate_names(model):
    """Drop the names of tensors that are neither a subgraph's inputs nor its outputs."""
    for subgraph in model.subgraphs:
        kept = {*subgraph.inputs, *subgraph.outputs}
        for index, tensor in enumerate(subgraph.tensors):
            if index not in kept:
                tensor.name = None


def _int8_fully_connected(model):
    """`(weights tensor, int8 values)` of each `FULLY_CONNECTED` with int8 weights in a flatbuffer object."""
    from tensorflow.lite.python import schema_py_generated as schema

    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
                continue
            weights = subgraph.tensors[op.inputs[1]]
            if weights.type == schema.TensorType.INT8:
                yield weights, np.asarray(model.buffers[weights.buffer].data, np.uint8).view(np.int8).reshape(weights.shape)


def int8_matrices(flatbuffer):
    """The `(out_features, in_features)` int8 weights of every int8 `FULLY_CONNECTED` of a `.tflite` file."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    return [values for _, values in _int8_fully_connected(model)]


def float_weights(flatbuffer, select):
    """`flatbuffer` with chosen hybrid `FULLY_CONNECTED` ops computing in float32 on their int8 weights.

    A diagnostic for dynamic-range int8 (`benchmarks/int8_error.py`): each
    `FULLY_CONNECTED` whose weights are int8 and for which
    `select((out_features, in_features))` is true reads a float32 copy of
    its weights, dequantized exactly (`q * scale`, per channel or per
    tensor), so its activations are no longer quantized on the fly while
    its weights keep their int8 rounding. Other readers of a shared int8
    buffer (a tied embedding's lookups) keep the int8 one. Returns
    `(flatbuffer, count of ops changed)`.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    copies, count = {}, 0  # (int8 buffer, scales) -> float buffer index
    for weights, q in list(_int8_fully_connected(model)):  # listed first: the loop edits the tensors
        if weights.type != schema.TensorType.INT8 or not select(tuple(int(d) for d in weights.shape)):
            continue  # (a tensor two ops read is changed at the first)
        parameters = weights.quantization
        scale = np.asarray(parameters.scale, np.float32)
        zero_point = np.asarray(parameters.zeroPoint if parameters.zeroPoint is not None else 0, np.float32)
        key = (weights.buffer, scale.tobytes(), zero_point.tobytes())
        if key not in copies:
            axis_shape = [-1 if i == parameters.quantizedDimension else 1 for i in range(q.ndim)]
            values = (q.astype(np.float32) - zero_point.reshape(axis_shape)) * scale.reshape(axis_shape)
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values.astype(np.float32).tobytes(), np.uint8)
            model.buffers.append(buffer)
            copies[key] = len(model.buffers) - 1
        weights.buffer, weights.type, weights.quantization = copies[key], schema.TensorType.FLOAT32, None
        count += 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), count


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


def refuse_flex(flatbuffer, name):
    """Raise `ExportError` if the converted model `name` needs TensorFlow (Flex) ops."""
    flex = [op for op in operators(flatbuffer) if op.startswith("Flex")]
    if flex:
        raise ExportError(f"{name}: the converted model needs Flex ops {flex}.")
