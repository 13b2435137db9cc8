"""Passes over TFLite flatbuffers: shared quantization parameters, the ops a model uses."""

import numpy as np

from .errors import ExportError


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


def refuse_flex(flatbuffer, name):
    """Raise `ExportError` if the converted model `name` needs TensorFlow (Flex) ops."""
    flex = [op for op in operators(flatbuffer) if op.startswith("Flex")]
    if flex:
        raise ExportError(f"{name}: the converted model needs Flex ops {flex}.")
