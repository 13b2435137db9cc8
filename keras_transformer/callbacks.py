"""Training callbacks that Keras does not ship."""

import time

import keras


class TimeLimit(keras.callbacks.Callback):
    """Stop `fit` once `minutes` of training have passed.

    The check runs after every batch, so the epoch in progress ends early;
    Keras still validates it and calls the epoch-end callbacks (scores,
    checkpoints), then stops. The clock starts when training begins and
    includes validation.

    Args:
        minutes: the budget, in minutes (fractions allowed).

    Example:
    >>> model.fit(data, epochs=100, callbacks=[TimeLimit(60)])
    """

    def __init__(self, minutes):
        super().__init__()
        if not minutes > 0:
            raise ValueError(f"`minutes` must be positive. Received: minutes={minutes}")
        self.minutes = minutes
        self.start = None
        self.stopped_at_epoch = None

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start >= 60 * self.minutes:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.stopped_at_epoch is None:
            self.stopped_at_epoch = epoch
