"""The paper's optimizer (section 5.3)."""

import keras

from keras_transformer.schedules import TransformerSchedule


def transformer_adam(hidden_dim, warmup_steps=4000, learning_rate=None, clipnorm=None):
    """Adam with beta_1 0.9, beta_2 0.98, epsilon 1e-9.

    Args:
        hidden_dim: `d_model`, for the schedule.
        warmup_steps: warm-up steps of the schedule.
        learning_rate: a fixed rate or a schedule instead of
            `TransformerSchedule(hidden_dim, warmup_steps)`.
        clipnorm: optional gradient-norm clipping.
    """
    if learning_rate is None:
        learning_rate = TransformerSchedule(hidden_dim, warmup_steps)
    return keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=0.9, beta_2=0.98, epsilon=1e-9, clipnorm=clipnorm
    )
