"""The LiteRT interpreter for exported `.tflite` files (with tensorflow-text's kernels)."""

import os

from .errors import ExportError


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
    try:
        return InterpreterWithCustomOps(
            custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS,
            model_path=path,
            num_threads=num_threads,
            **kwargs,
        )
    except (ValueError, RuntimeError) as error:
        raise ExportError(f"{path} is not a readable TFLite model (truncated or corrupt?): {error}") from None
