"""The base of every exported `tf.Module`: a model's weights, live or frozen, and input checks."""

import contextlib

import keras
import tensorflow as tf

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
    """

    def __init__(self, model, max_length, freeze=False, flag_out_of_range=False):
        super().__init__()
        self.model = model
        self.max_length = max_length
        self.flag_out_of_range = flag_out_of_range
        self._frozen = [v.numpy() for v in model.variables] if freeze else None

    @contextlib.contextmanager
    def weight_scope(self):
        """The context the model runs in: frozen weights as constants, or the variables."""
        if self._frozen is None:
            yield
            return
        mapping = [(v, tf.constant(value)) for v, value in zip(self.model.variables, self._frozen)]
        with keras.StatelessScope(state_mapping=mapping):
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
