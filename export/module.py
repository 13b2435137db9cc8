"""The base of every exported `tf.Module`: a model's weights, live or frozen, and length checks."""

import contextlib

import keras
import tensorflow as tf


class ExportModule(tf.Module):
    """A Keras model wrapped for `tf.saved_model.save` and the TFLite converter.

    Args:
        model: the Keras model.
        max_length: the longest sequence the signatures accept.
        freeze: read the weights as graph constants rather than variables
            (TFLite: the converter keeps variables read inside a while loop
            as uninitialised resources).
    """

    def __init__(self, model, max_length, freeze=False):
        super().__init__()
        self.model = model
        self.max_length = max_length
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
