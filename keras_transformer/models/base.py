"""What every model family shares: architecture defaults, `from_preset`, `compile` defaults.

`ModelBase` resolves `compile("auto")` from three hooks a family overrides
(`default_optimizer`, `default_loss`, `default_metrics`) and restores the
compiled state of a `.keras` file. `ArchitectureModel` adds the architecture
arguments (`ARCHITECTURE`: names and the paper's base-model defaults, the
one place they are written), their checks, attributes and config, and
`from_preset`.
"""

import threading

import keras
from keras import ops

from keras_transformer.losses import token_share
from keras_transformer.models.common import ARCHITECTURE, check_architecture, check_token_ids
from keras_transformer.models.presets import preset_config
from keras_transformer.vocabulary import PAD_ID


# The labels and projected positions of the train step being traced, per model and per thread:
# `tf.distribute.MirroredStrategy` traces each replica's step in a thread of its own, interleaved.
_PACKING = threading.local()


class ModelBase(keras.Model):
    """`compile` with defaults: `"auto"` takes the family's optimizer, loss and metrics.

    Class attributes:
        default_label_smoothing: used when `compile` gets none.
        default_learning_rate: Adam's rate when `compile` gets none (families
            whose default optimizer is not the paper's schedule).
    """

    default_label_smoothing = 0.0
    default_learning_rate = 1e-3
    token_labels = False  # labels are token ids padded with PAD_ID (the masked token loss; see `compute_loss`)
    # Token-label models, training on TensorFlow without XLA: the output layer and the loss run over the real
    # label positions only (`output_logits`). Set to False on an instance to project every position.
    project_real_tokens = True

    def default_optimizer(self, learning_rate=None, warmup_steps=4000):
        return keras.optimizers.Adam(self.default_learning_rate if learning_rate is None else learning_rate)

    def default_loss(self, label_smoothing):
        from keras_transformer.losses import MaskedSparseCategoricalCrossentropy

        return MaskedSparseCategoricalCrossentropy(label_smoothing=label_smoothing)

    def default_metrics(self):
        from keras_transformer.metrics import MaskedAccuracy

        return [MaskedAccuracy()]

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        learning_rate=None,
        warmup_steps=4000,
        label_smoothing=None,
        **kwargs,
    ):
        """`keras.Model.compile`, where `"auto"` means the family's default.

        Args:
            optimizer, loss, metrics: as in Keras, or `"auto"`.
            learning_rate: a rate or schedule for the default optimizer.
            warmup_steps: the paper's warm-up (encoder-decoder default
                optimizer only).
            label_smoothing: for the default loss (`default_label_smoothing`
                when `None`).
            **kwargs: any other `keras.Model.compile` argument.
        """
        if optimizer == "auto":
            optimizer = self.default_optimizer(learning_rate, warmup_steps)
        if loss == "auto":
            loss = self.default_loss(self.default_label_smoothing if label_smoothing is None else label_smoothing)
        if metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build on one replica's first batch under `tf.distribute` (Keras's TensorFlow trainer only).

        Keras builds a model under a strategy on the first distributed batch
        averaged over replicas (`strategy.reduce("MEAN")`), which turns token
        ids and labels into float32 and fails the models' id checks. Every
        replica's batch has the same structure, shapes and dtypes, so the
        first replica's local batch builds the same model.
        """
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and data_batch is None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches)
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, *args, **kwargs):
        """Keras's step; for token labels on TensorFlow (no XLA), with the output layer over real tokens only.

        The step's labels are kept while it is traced, so that
        `output_logits` projects only the hidden states of the positions
        whose label is not padding: `(N, V)` logits for the batch's `N` real
        tokens instead of `(B, T, V)`. The output layer is about a quarter
        of a step's FLOPs and the loss's softmax its largest element-wise
        op, both in proportion to the positions they see. `compute_loss` and
        `compute_metrics` read the labels at the same positions: the loss,
        its gradient and the metrics are the same as over `(B, T, V)`.
        XLA (`jit_compile`) needs static shapes, JAX too: they project
        every position.
        """
        if not self._packs_real_tokens():
            return super().train_step(*args, **kwargs)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(args[0])
        if y is None or sample_weight is not None or isinstance(y, dict):
            return super().train_step(*args, **kwargs)
        _PACKING.steps = {**getattr(_PACKING, "steps", {}), id(self): {"labels": y}}
        try:
            return super().train_step(*args, **kwargs)
        finally:
            del _PACKING.steps[id(self)]

    @property
    def _packing(self):
        """This thread's packing state of the train step being traced, or `None` (a replica traces in its thread)."""
        return getattr(_PACKING, "steps", {}).get(id(self))

    def _packs_real_tokens(self):
        return (
            self.token_labels
            and self.project_real_tokens
            and keras.backend.backend() == "tensorflow"
            and not getattr(self, "jit_compile", False)
        )

    def output_logits(self, hidden_states, training=None):
        """`self.logits` of `(B, T, d_model)` hidden states; in a packing train step, of the real label positions.

        Returns `(B, T, V)`, or `(N, V)` for the `N` positions whose label
        is not `PAD_ID` while `train_step` packs (see there).
        """
        if self._packing is None or not training:
            return self.logits(hidden_states)
        real = ops.reshape(ops.not_equal(self._packing["labels"], PAD_ID), [-1])
        positions = ops.where(real)[0]
        self._packing["positions"] = positions
        flat = ops.reshape(hidden_states, [-1, ops.shape(hidden_states)[-1]])
        return self.logits(ops.take(flat, positions, axis=0))

    def _packed_labels(self, y, y_pred):
        """`y` at the packed positions when `y_pred` holds only them (see `train_step`), else `y`."""
        packing = self._packing
        if packing is None or "positions" not in packing or y is None or len(y_pred.shape) != 2:
            return y
        return ops.take(ops.reshape(y, [-1]), packing["positions"], axis=0)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, self._packed_labels(y, y_pred), y_pred, sample_weight=sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras's loss; under `tf.distribute`, a mean over the real tokens of the global batch.

        Applies to the models whose labels are token ids padded with
        `PAD_ID` (`Transformer`, `TransformerLM`): each replica's loss is
        scaled by its share of the real tokens (`losses.token_share`).
        In a packing train step the labels are read at the projected
        positions (`train_step`).
        """
        if y_pred is not None and not isinstance(y_pred, (dict, list, tuple)):
            y = self._packed_labels(y, y_pred)
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if self.token_labels and y is not None and not isinstance(y, dict):
            loss = loss * keras.ops.cast(token_share(y), loss.dtype)
        return loss

    def compile_from_config(self, config):
        """Restore the compiled state saved in a `.keras` file."""
        config = keras.saving.deserialize_keras_object(config)
        keras.Model.compile(self, **config)
        if self.built:
            self.optimizer.build(self.trainable_variables)


class ArchitectureModel(ModelBase):
    """A model built from the architecture arguments of `ARCHITECTURE`.

    Subclasses pass their own arguments and the `**kwargs` they received to
    `__init__`; architecture names are taken out of `kwargs` (defaults from
    `ARCHITECTURE`), checked, and set as attributes; the rest go to
    `keras.Model` (which refuses unknown names).
    """

    def __init__(self, kwargs, **vocabulary_sizes):
        architecture = {name: kwargs.pop(name, default) for name, default in ARCHITECTURE.items()}
        super().__init__(**kwargs)
        check_architecture(architecture, **vocabulary_sizes)
        self.architecture = architecture
        for name, value in architecture.items():
            setattr(self, name, value)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """A model with preset `preset` ("tiny", "small", "base", "big").

        Keyword arguments (vocabulary sizes at least) complete or override the
        preset.
        """
        config = preset_config(preset)
        config.update(kwargs)
        return cls(**config)

    def check_token_ids(self, name, token_ids):
        """Reject ids the model cannot read (rank, dtype, longer than `max_sequence_length`) with a `ValueError`."""
        check_token_ids(name, token_ids, self.max_sequence_length)

    def get_config(self):
        config = super().get_config()
        config.update(self.architecture)
        return config
