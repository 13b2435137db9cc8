"""The paper's learning-rate schedule (section 5.3)."""

import keras
from keras import ops

from keras_transformer.checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)`.

    Rises linearly for `warmup_steps` steps, then decays with the inverse
    square root of the step. `step` counts from 1 (the optimizer's
    iteration counter, which starts at 0, plus one).

    Args:
        hidden_dim: `d_model`.
        warmup_steps: 4000 in the paper.
        scale: a constant factor on the whole schedule (1 in the paper).

    Example:
    >>> schedule = keras_transformer.schedules.TransformerSchedule(hidden_dim=512, warmup_steps=4000)
    >>> optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    """

    def __init__(self, hidden_dim, warmup_steps=4000, scale=1.0):
        check_positive_int(hidden_dim, "hidden_dim")
        check_positive_int(warmup_steps, "warmup_steps")
        if scale <= 0:
            raise ValueError(f"`scale` must be positive. Received: scale={scale}")
        self.hidden_dim = hidden_dim
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        rate = ops.minimum(ops.power(step, -0.5), step * warmup**-1.5)
        return self.scale * float(self.hidden_dim) ** -0.5 * rate

    def get_config(self):
        return {"hidden_dim": self.hidden_dim, "warmup_steps": self.warmup_steps, "scale": self.scale}
