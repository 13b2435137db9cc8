"""The paper's optimizer (section 5.3)."""

import keras
from keras import ops

from keras_transformer.checks import check_positive_int
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

    On TensorFlow each variable's update is one fused kernel
    (`ResourceApplyAdam`: the same formula, in one pass over the variable and
    its two moments) instead of Keras's dozen element-wise ops, each a pass
    over the whole variable: an update of "small"'s 11.7M weights took
    16-22 ms instead of 45 on 2 cores (`benchmarks/train_throughput.py
    --compare-keras-adam`, see `benchmarks/RESULTS.md`). Other
    backends (where the compiler fuses the ops), and `amsgrad`, keep Keras's
    update.

    With `cooldown=True` the optimizer also holds a cooldown window, the
    variable `cooldown_window` `[start, end]` in iterations (`[-1, -1]`: none
    yet): from `start` on, the learning rate is multiplied by
    `(end - iteration) / (end - start)`, so it falls linearly to zero at
    `end` and stays there. `keras_transformer.callbacks.Cooldown` sets it
    when training knows its length (epochs, or a time limit). The window is
    a variable of the optimizer, so checkpoints keep it and a compiled train
    step reads it without retracing.

    Args:
        cooldown: hold the cooldown window (off by default).
        Other arguments: those of `keras.optimizers.Adam`.
    """

    def __init__(self, *args, cooldown=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.cooldown = bool(cooldown)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self.cooldown:
            self.cooldown_window = self.add_variable(
                (2,), initializer=keras.initializers.Constant(-1.0), dtype="float32", name="cooldown_window"
            )

    def _get_current_learning_rate(self):
        rate = super()._get_current_learning_rate()
        if not (self.cooldown and self.built):
            return rate
        return rate * cooldown_factor(self._iterations, self.cooldown_window)

    def get_config(self):
        return {**super().get_config(), "cooldown": self.cooldown}

    def apply(self, grads, trainable_variables=None):
        return super().apply([_summed_rows(g) for g in grads], trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        _fused_tensorflow_adam(
            variable,
            self._momentums[index],
            self._velocities[index],
            gradient,
            learning_rate,
            self.iterations + 1,
            self.beta_1,
            self.beta_2,
            self.epsilon,
        )


def cooldown_factor(iteration, window):
    """The learning-rate multiplier at `iteration` for the cooldown `window` `[start, end]` (1 before `start`).

    Falls linearly from 1 at `start` to 0 at `end` and stays 0 after it;
    a negative `start` means no cooldown.
    """
    window = ops.convert_to_tensor(window, "float32")
    start, end = window[0], window[1]
    step = ops.cast(iteration, "float32")
    falling = ops.clip((end - step) / ops.maximum(end - start, 1.0), 0.0, 1.0)
    return ops.where(start < 0, 1.0, falling)


def _summed_rows(gradient):
    """A TensorFlow `IndexedSlices` as the dense tensor it stands for (slices of one row summed)."""
    if type(gradient).__name__ != "IndexedSlices":  # only TensorFlow has them
        return gradient
    import tensorflow as tf

    return tf.convert_to_tensor(gradient)


def _fused_tensorflow_adam(variable, momentum, velocity, gradient, learning_rate, step, beta_1, beta_2, epsilon):
    """Keras's Adam update of one variable as TensorFlow's fused `ResourceApplyAdam` kernel.

    The kernel computes what `keras.optimizers.Adam.update_step` does:
    `m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`,
    `w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon)`.
    Inside a `tf.distribute` update the handles are the replica's own copies.
    """
    import tensorflow as tf

    def handle(v):
        return (v.value if isinstance(v, keras.Variable) else v).handle

    dtype = tf.as_dtype(variable.dtype)
    step = tf.cast(step, dtype)
    beta_1, beta_2 = tf.cast(beta_1, dtype), tf.cast(beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=handle(variable),
        m=handle(momentum),
        v=handle(velocity),
        beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype),
        beta1=beta_1,
        beta2=beta_2,
        epsilon=tf.cast(epsilon, dtype),
        grad=tf.cast(gradient, dtype),
    )


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
