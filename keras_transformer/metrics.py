"""Token accuracy that ignores padding: a Keras metric for training, a function for evaluation."""

import keras
import numpy as np
from keras import ops

from keras_transformer.vocabulary import PAD_ID


@keras.saving.register_keras_serializable(package="keras_transformer")
class MaskedAccuracy(keras.metrics.Metric):
    """Share of non-padding target tokens whose arg-max prediction is right.

    Args:
        pad_id: the label id that is not counted.
        name, dtype: as in `keras.metrics.Metric`.

    Example:
    >>> metric = keras_transformer.metrics.MaskedAccuracy()
    >>> metric.update_state([[4, 0]], [[[0, 0, 0, 0, 1.0], [1.0, 0, 0, 0, 0]]])
    >>> float(metric.result())
    1.0
    """

    def __init__(self, pad_id=PAD_ID, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.pad_id = pad_id
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        weights = ops.cast(ops.not_equal(y_true, self.pad_id), self.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, self.dtype)
            if len(sample_weight.shape) == 1:
                sample_weight = sample_weight[:, None]
            weights = weights * sample_weight
        hits = ops.cast(ops.equal(predictions, y_true), self.dtype) * weights
        self.correct.assign_add(ops.sum(hits))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update({"pad_id": self.pad_id})
        return config


def sequence_accuracy(labels, predictions, pad_id=PAD_ID):
    """Token and whole-sequence accuracy of predicted ids, positions labelled `pad_id` ignored.

    Args:
        labels, predictions: `(N, T)` int arrays (predictions: arg-max ids).

    Returns:
        `{"token_accuracy": ..., "sentence_accuracy": ...}` as floats.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    real = labels != pad_id
    correct = (predictions == labels) & real
    return {
        "token_accuracy": float(correct.sum() / max(real.sum(), 1)),
        "sentence_accuracy": float(np.mean(correct.sum(1) == real.sum(1))),
    }
