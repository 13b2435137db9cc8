"""The paper's optimizer (section 5.3)."""

import keras
from keras import ops

from keras_transformer.layers.utils import check_positive_int
from keras_transformer.schedules import TransformerSchedule


def transformer_adam(hidden_dim, warmup_steps=4000, learning_rate=None, clipnorm=None, accumulate_steps=1):
    """Adam with beta_1 0.9, beta_2 0.98, epsilon 1e-9.

    Args:
        hidden_dim: `d_model`, for the schedule.
        warmup_steps: warm-up steps of the schedule.
        learning_rate: a fixed rate or a schedule instead of
            `TransformerSchedule(hidden_dim, warmup_steps)`.
        clipnorm: optional gradient-norm clipping.
        accumulate_steps: update the weights once every this many batches
            with their averaged gradients (see `accumulating_adam`).
    """
    if learning_rate is None:
        learning_rate = TransformerSchedule(hidden_dim, warmup_steps)
    return accumulating_adam(
        learning_rate, accumulate_steps, beta_1=0.9, beta_2=0.98, epsilon=1e-9, clipnorm=clipnorm
    )


def accumulating_adam(learning_rate, accumulate_steps=1, **kwargs):
    """`keras.optimizers.Adam`, updating once every `accumulate_steps` batches.

    Keras's own `gradient_accumulation_steps`: the gradients of
    `accumulate_steps` consecutive batches are averaged (each batch weighs
    the same) into one update, so `batch_size` B with `accumulate_steps` k
    trains like batches of k x B in the memory of one B. A learning-rate
    schedule counts updates, not batches (Keras alone would feed it the
    batch counter), so warm-up steps mean the same with and without it.
    """
    check_positive_int(accumulate_steps, "accumulate_steps")
    if accumulate_steps == 1:
        return Adam(learning_rate, **kwargs)
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = PerUpdate(learning_rate, accumulate_steps)
    return Adam(learning_rate, gradient_accumulation_steps=accumulate_steps, **kwargs)


@keras.saving.register_keras_serializable(package="keras_transformer")
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with each sparse gradient summed per row before the update.

    On TensorFlow an embedding lookup's gradient is an `IndexedSlices` with
    one slice per occurrence of a token. Keras's Adam squares it slice by
    slice, so a token used n times in a batch gets the sum of its n squared
    slices as its second moment instead of the square of its gradient (the
    sum of the slices). Summing the slices first (a dense gradient, as on the
    JAX and PyTorch backends) gives Adam exactly; the update of the dense
    moments is dense anyway.
    """

    def apply(self, grads, trainable_variables=None):
        return super().apply([_summed_rows(g) for g in grads], trainable_variables)


def _summed_rows(gradient):
    """A TensorFlow `IndexedSlices` as the dense tensor it stands for (slices of one row summed)."""
    if type(gradient).__name__ != "IndexedSlices":  # only TensorFlow has them
        return gradient
    import tensorflow as tf

    return tf.convert_to_tensor(gradient)


@keras.saving.register_keras_serializable(package="keras_transformer")
class PerUpdate(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` read at the optimizer's update count: batch counter // `accumulate_steps`.

    Args:
        schedule: a `LearningRateSchedule` over updates.
        accumulate_steps: batches per update.
    """

    def __init__(self, schedule, accumulate_steps):
        check_positive_int(accumulate_steps, "accumulate_steps")
        self.schedule = schedule
        self.accumulate_steps = accumulate_steps

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.accumulate_steps))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "accumulate_steps": self.accumulate_steps,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, schedule=keras.saving.deserialize_keras_object(config["schedule"]))
        return cls(**config)
