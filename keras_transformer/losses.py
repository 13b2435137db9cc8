"""The training loss: token cross-entropy with label smoothing, padding ignored."""

import keras
from keras import ops
from keras.src.backend import set_keras_mask

from keras_transformer.vocabulary import PAD_ID


@keras.saving.register_keras_serializable(package="keras_transformer")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy with label smoothing that ignores padding.

    With smoothing `eps` (0.1 in the paper, section 5.4) over a vocabulary of
    `V`, the target distribution is `(1 - eps) * one_hot(y) + eps / V`, so the
    per-token loss is `(1 - eps) * -log p(y) + eps * mean_k(-log p(k))`.
    Positions whose label is `pad_id` add nothing; the default reduction
    averages over the real tokens of the batch (not over padded positions).

    Args:
        label_smoothing: `eps`, in [0, 1).
        from_logits: whether predictions are logits (the model's output) or
            probabilities.
        pad_id: the label id that is ignored.
        reduction, name, dtype: as in `keras.losses.Loss`.

    Example:
    >>> loss = keras_transformer.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    >>> loss(keras.ops.array([[5, 3, 0]]), keras.random.normal((1, 3, 10)))
    """

    def __init__(
        self,
        label_smoothing=0.0,
        from_logits=True,
        pad_id=PAD_ID,
        reduction="sum_over_batch_size",
        name="masked_sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}"
            )
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        if len(y_pred.shape) != len(y_true.shape) + 1:
            raise ValueError(
                "Expected labels `(B, T)` and predictions `(B, T, V)`. Received: "
                f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
            )
        mask = ops.not_equal(y_true, self.pad_id)
        labels = ops.where(mask, y_true, 0)
        if self.from_logits:
            # The smoothed target distribution against the logits in one fused op (TensorFlow's
            # softmax_cross_entropy_with_logits), which also yields the gradient: cheaper than a
            # log-softmax and a gather, whose gradient scatters into a (B, T, V) tensor.
            vocabulary_size = ops.shape(y_pred)[-1]
            targets = ops.one_hot(labels, vocabulary_size, dtype="float32")
            if self.label_smoothing:
                targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / vocabulary_size
            losses = ops.categorical_crossentropy(targets, y_pred, from_logits=True)
        else:
            log_probs = ops.log(ops.clip(y_pred, 1e-7, 1.0))
            losses = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), -1)
            if self.label_smoothing:
                smooth = -ops.mean(log_probs, axis=-1)
                losses = (1.0 - self.label_smoothing) * losses + self.label_smoothing * smooth
        losses = ops.where(mask, losses, 0.0)
        # The mask makes Keras's reduction divide by the number of real tokens.
        set_keras_mask(losses, mask)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits,
                "pad_id": self.pad_id,
            }
        )
        return config


def token_share(labels, pad_id=PAD_ID):
    """The factor that keeps a masked token loss a mean over the real tokens of the global batch.

    Keras averages each replica's loss (its own tokens' mean) over replicas;
    scaling a replica's loss by its share of the real tokens (times the
    number of replicas) makes the sum of the replicas' gradients the gradient
    of the global token mean, as on one device. The models' `compute_loss`
    applies it to token labels.

    Returns this replica's real tokens x replicas / the global batch's real
    tokens, or 1 outside `tf.distribute` (and on JAX and PyTorch).
    """
    if keras.backend.backend() != "tensorflow":
        return 1.0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1.0
    local = tf.reduce_sum(tf.cast(tf.not_equal(labels, pad_id), "float32"))
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    return tf.stop_gradient(local * context.num_replicas_in_sync / tf.maximum(total, 1.0))
