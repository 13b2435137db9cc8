"""The base of every exported `tf.Module`: a model's weights, live or frozen, and input checks."""

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from keras_transformer.layers import TokenEmbedding
from keras_transformer.vocabulary import UNKNOWN_ID

OUT_OF_RANGE_OUTPUT = "out_of_range_ids"


class ExportModule(tf.Module):
    """A Keras model wrapped for `tf.saved_model.save` and the TFLite converter.

    Args:
        model: the Keras model.
        max_length: the longest sequence the signatures accept.
        freeze: read the weights as graph constants rather than variables
            (TFLite: the converter keeps variables read inside a while loop
            as uninitialised resources).
        flag_out_of_range: how a signature treats token ids outside
            `[0, vocabulary)`. `False` (SavedModel): the call fails with an
            `InvalidArgumentError` naming the input and the range. `True`
            (TFLite, whose converter drops assertions): such ids are read as
            the unknown token and every signature taking ids also returns
            `out_of_range_ids`, `(B,)` int32, how many ids of each row were
            replaced (0 for a valid row).
        int8_embeddings: (with `freeze`; TFLite's dynamic int8) look token
            embeddings up in an int8 copy of each table with one scale per
            row, see `Int8Embeddings`.
        frozen_values: (with `freeze`) `{variable path: array}`: values to
            freeze these variables to instead of their own (GPTQ-rounded
            kernels, see `export.gptq`); the model is left as it is.
    """

    def __init__(
        self, model, max_length, freeze=False, flag_out_of_range=False, int8_embeddings=False, frozen_values=None
    ):
        super().__init__()
        if (int8_embeddings or frozen_values) and not freeze:
            raise ValueError("`int8_embeddings` and `frozen_values` need `freeze=True`: they are graph constants.")
        self.model = model
        self.max_length = max_length
        self.flag_out_of_range = flag_out_of_range
        self._int8_embeddings = Int8Embeddings(model) if int8_embeddings else None
        self._frozen = None
        if freeze:
            values = _frozen_values(model, frozen_values or {})
            if self._int8_embeddings is not None:
                values = [self._int8_embeddings.frozen_value(v, value) for v, value in zip(model.variables, values)]
            # Held in variables of their own, read once where a signature starts: a graph constant would be copied
            # into every traced function (several copies of a 74M-parameter model's weights per signature).
            self._frozen = [tf.Variable(value, trainable=False) for value in values]

    def frozen_variables(self):
        """The variables a frozen module's signatures read (`None` unfrozen): the converter makes them constants."""
        if self._frozen is None:
            return None
        return self._frozen + ([] if self._int8_embeddings is None else self._int8_embeddings.variables())

    @contextlib.contextmanager
    def weight_scope(self):
        """The context the model runs in: frozen weights as constants, or the variables."""
        if self._frozen is None:
            yield
            return
        with keras.StatelessScope(state_mapping=list(zip(self.model.variables, self._frozen))):
            if self._int8_embeddings is None:
                yield
            else:
                with self._int8_embeddings.lookups():
                    yield

    def check_length(self, token_ids):
        """An assertion that `token_ids` has at most `max_length` positions."""
        return tf.debugging.assert_less_equal(
            tf.shape(token_ids)[1],
            self.max_length,
            message=f"token sequences must be at most max_sequence_length={self.max_length} long",
        )

    def pad_to_max_length(self, token_ids):
        """Pad ids to exactly `max_length` positions; longer ones are an error."""
        with tf.control_dependencies([self.check_length(token_ids)]):
            token_ids = tf.pad(token_ids, [[0, 0], [0, self.max_length - tf.shape(token_ids)[1]]])
        return tf.ensure_shape(token_ids, [None, self.max_length])

    def check_ids(self, name, token_ids, vocabulary_size):
        """`token_ids` checked against `[0, vocabulary_size)`: `(ids, extra outputs)`.

        See `flag_out_of_range`: the ids unchanged behind an assertion and no
        extra output, or the ids with out-of-range ones replaced by the
        unknown id and `{"out_of_range_ids": (B,) count}`.
        """
        outside = tf.logical_or(token_ids < 0, token_ids >= vocabulary_size)
        if self.flag_out_of_range:
            count = tf.reduce_sum(tf.cast(outside, tf.int32), axis=1)
            return tf.where(outside, tf.constant(UNKNOWN_ID, token_ids.dtype), token_ids), {OUT_OF_RANGE_OUTPUT: count}
        check = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(outside)),
            [f"`{name}` holds token ids outside [0, {vocabulary_size}) (the vocabulary); "
             f"map unknown words to the unknown id ({UNKNOWN_ID}). Smallest and largest ids:",
             tf.reduce_min(token_ids), tf.reduce_max(token_ids)],
        )
        with tf.control_dependencies([check]):
            return tf.identity(token_ids), {}


def _frozen_values(model, replacements):
    """Every variable's value, `replacements[path]` where given (same shape)."""
    variables = {v.path: v for v in model.variables}
    unknown = sorted(set(replacements) - set(variables))
    if unknown:
        raise ValueError(f"`frozen_values` names variables the model does not have: {unknown[:3]}")
    for path, value in replacements.items():
        if tuple(np.shape(value)) != tuple(variables[path].shape):
            raise ValueError(f"`frozen_values[{path!r}]` has shape {np.shape(value)}, the variable {variables[path].shape}.")
    return [np.asarray(replacements[v.path], v.dtype) if v.path in replacements else v.numpy() for v in model.variables]


class Int8Embeddings:
    """Token embeddings looked up in int8 tables, one scale per row (TFLite dynamic int8).

    TFLite's dynamic-range quantizer stores a tied table twice: once per
    channel (one scale per token) for the output layer's `FULLY_CONNECTED`,
    and once per tensor (one scale for the whole table) for `GATHER`, which
    `generate` dequantizes to float before its loop. Here each
    `TokenEmbedding`'s table `W` becomes `Q * s` (`Q` int8 in [-127, 127],
    `s` = the row's largest magnitude / 127): lookups gather rows of `Q`
    (a plain int8 constant once converted) and multiply them by their `s` (and
    `sqrt(d_model)`), and the output layer reads the float `Q * s`, which
    the quantizer's own per-channel rounding turns back into exactly `Q`.
    `flatbuffer.compact` then stores `Q` once. Lookups gain
    per-row precision; the output layer is quantized as before.

    Args:
        model: the model whose `TokenEmbedding` layers are looked up in int8.
    """

    def __init__(self, model):
        self.layers = [layer for layer in model._flatten_layers() if isinstance(layer, TokenEmbedding)]
        self.tables = {}  # id(embeddings variable) -> (int8 rows, per-row scales incl. sqrt(d_model))
        for layer in self.layers:
            table = keras.ops.convert_to_numpy(layer.embeddings).astype("float32")
            scale = np.abs(table).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype("float32")
            quantized = np.clip(np.round(table / scale[:, None]), -127, 127).astype("int8")
            lookup_scale = scale * (math.sqrt(layer.output_dim) if layer.scale_embeddings else 1.0)
            self.tables[id(layer.embeddings)] = (quantized, scale, lookup_scale.astype("float32"))
        # id(embeddings variable) -> variables of the int8 rows and of the scales' int32 bit patterns (the
        # quantizer would make a float vector int8 too).
        self._lookup_variables = {
            key: (tf.Variable(quantized, trainable=False), tf.Variable(lookup_scale.view("int32"), trainable=False))
            for key, (quantized, _, lookup_scale) in self.tables.items()
        }

    def variables(self):
        """The int8 tables and scales the lookups read."""
        return [variable for pair in self._lookup_variables.values() for variable in pair]

    def frozen_value(self, variable, value):
        """The constant `variable` is frozen to: `Q * s` for an embedding table, `value` otherwise."""
        if id(variable) not in self.tables:
            return value
        quantized, scale, _ = self.tables[id(variable)]
        return quantized.astype("float32") * scale[:, None]

    @contextlib.contextmanager
    def lookups(self):
        """Within: every `TokenEmbedding`'s forward call gathers from its int8 table."""
        for layer in self.layers:
            object.__setattr__(layer, "call", self._call(layer))  # shadows the class's `call`
        try:
            yield
        finally:
            for layer in self.layers:
                del layer.__dict__["call"]

    def _call(self, layer):
        # Read once, where `lookups` is entered: not inside a decoding loop (see `ExportModule`'s `freeze`).
        table, scales = (tf.convert_to_tensor(variable) for variable in self._lookup_variables[id(layer.embeddings)])
        call = type(layer).call.__get__(layer)

        def int8_call(inputs, reverse=False):
            if reverse:
                return call(inputs, reverse=True)
            ids = tf.cast(inputs, tf.int32)
            rows = tf.cast(tf.gather(table, ids), tf.float32)
            scale = tf.bitcast(tf.gather(scales, ids), tf.float32)
            return tf.cast(rows * scale[..., None], layer.compute_dtype)

        return int8_call
