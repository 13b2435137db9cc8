"""Task models over a `TransformerEncoderModel`: classifier, tagger, masked LM."""

import keras
from keras import ops

from keras_transformer.layers.masks import padding_mask
from keras_transformer.checks import check_positive_int, check_rate
from keras_transformer.models.base import ModelBase
from keras_transformer.models.transformer_encoder_model import TransformerEncoderModel

POOLINGS = ("first", "mean", "pooler")


class EncoderTask(ModelBase):
    """A backbone and a head: config with the backbone nested, `compile` defaults (`ModelBase`)."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, TransformerEncoderModel):
            raise ValueError(
                f"`backbone` must be a `TransformerEncoderModel`. Received: {type(backbone).__name__}"
            )
        self.backbone = backbone

    def _leave_unused_pooler(self, used):
        """A backbone's pooler that this head does not read is not trained (it would get no gradient)."""
        self.unused_pooler = self.backbone.pooler is not None and not used
        if self.unused_pooler:
            self.backbone.pooler.trainable = False

    def encode(self, inputs, training=None):
        """`(token_ids, hidden states)` of ids `(B, T)` or of `{"token_ids", "segment_ids"}`."""
        if isinstance(inputs, dict):
            if "token_ids" not in inputs or set(inputs) - {"token_ids", "segment_ids"}:
                raise ValueError('Inputs given as a dict must hold "token_ids" and may hold "segment_ids". '
                                 f"Received: {sorted(inputs)}")  # fmt: skip
            token_ids = inputs["token_ids"]
            return token_ids, self.backbone(token_ids, training=training, segment_ids=inputs.get("segment_ids"))
        return inputs, self.backbone(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerClassifier(EncoderTask):
    """N-to-1: a sentence's class from the encoder (BERT-like classification).

    The backbone's vectors are pooled, either the first position's (the
    `[CLS]`-style token: the data pipelines put the start token there), the
    mean over real (non-padding) positions, or BERT's pooled output (the
    backbone's tanh `pooler` over the first position), then dropout and a
    linear layer give class logits (softmax is left to the loss and to
    export).

    Args:
        backbone: a `TransformerEncoderModel` (pre-trained or fresh).
        num_classes: number of classes.
        pooling: `"first"`, `"mean"` or `"pooler"` (a backbone built with
            `pooler=True`, e.g. an imported BERT).
        dropout: dropout on the pooled vector.

    Call arguments:
        token_ids: `(B, T)` int ids, 0-padded, or a dict of `"token_ids"`
            and `"segment_ids"` (for a backbone with segments).
        training: whether dropout is active.

    Returns:
        `(B, num_classes)` logits.

    Example:
    >>> backbone = keras_transformer.models.TransformerEncoderModel.from_preset("tiny", vocabulary_size=100)
    >>> classifier = keras_transformer.TransformerClassifier(backbone, num_classes=3)
    >>> classifier(keras.ops.ones((2, 9), "int32")).shape
    (2, 3)
    """

    def default_loss(self, label_smoothing):
        if label_smoothing:
            raise ValueError(
                "`TransformerClassifier`'s default loss has no label smoothing; pass a `loss`. "
                f"Received: label_smoothing={label_smoothing}"
            )
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def __init__(self, backbone, num_classes, pooling="mean", dropout=0.1, **kwargs):
        super().__init__(backbone, **kwargs)
        check_positive_int(num_classes, "num_classes")
        check_rate(dropout, "dropout")
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
        if pooling == "pooler" and backbone.pooler is None:
            raise ValueError('`pooling="pooler"` needs a backbone with a pooler (`pooler=True`, as an imported BERT)')
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.pooled_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="pooled_dropout")
        self.classifier_head = keras.layers.Dense(num_classes, dtype=self.dtype_policy, name="classifier_head")
        self.classifier_head.build((None, backbone.hidden_dim))
        self._leave_unused_pooler(pooling == "pooler")
        self.built = True

    def call(self, token_ids, training=None):
        token_ids, hidden = self.encode(token_ids, training=training)  # (B, T, d)
        if self.pooling == "first":
            pooled = hidden[:, 0, :]
        elif self.pooling == "pooler":
            pooled = self.backbone.pool(hidden)
        else:
            mask = ops.cast(padding_mask(token_ids), hidden.dtype)[:, :, None]  # (B, T, 1)
            pooled = ops.sum(hidden * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        pooled = self.pooled_dropout(pooled, training=training)
        return ops.cast(self.classifier_head(pooled), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, pooling=self.pooling, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerTagger(EncoderTask):
    """N-to-N: one tag per token (part-of-speech, named entities).

    A linear layer over each position's vector. Tag id 0 is the padding tag:
    the default loss and accuracy ignore positions labelled 0, so padding
    (and the start/end positions the pipelines label 0) costs nothing.

    Args:
        backbone: a `TransformerEncoderModel`.
        num_tags: number of tag ids, the padding tag 0 included.
        dropout: dropout before the output layer.

    Call arguments:
        token_ids: `(B, T)` int ids, 0-padded.
        training: whether dropout is active.

    Returns:
        `(B, T, num_tags)` logits.

    Example:
    >>> backbone = keras_transformer.models.TransformerEncoderModel.from_preset("tiny", vocabulary_size=100)
    >>> tagger = keras_transformer.TransformerTagger(backbone, num_tags=5)
    >>> tagger(keras.ops.ones((2, 9), "int32")).shape
    (2, 9, 5)
    """

    def __init__(self, backbone, num_tags, dropout=0.1, **kwargs):
        super().__init__(backbone, **kwargs)
        check_positive_int(num_tags, "num_tags")
        check_rate(dropout, "dropout")
        self.num_tags = num_tags
        self.dropout = dropout
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="output_dropout")
        self.tagger_head = keras.layers.Dense(num_tags, dtype=self.dtype_policy, name="tagger_head")
        self.tagger_head.build((None, None, backbone.hidden_dim))
        self._leave_unused_pooler(False)
        self.built = True

    def call(self, token_ids, training=None):
        hidden = self.output_dropout(self.encode(token_ids, training=training)[1], training=training)
        return ops.cast(self.tagger_head(hidden), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_tags=self.num_tags, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerMaskedLM(EncoderTask):
    """Masked language modelling, BERT's pre-training objective.

    Predicts the original ids at masked positions (the inputs there hold the
    mask token, a random token or the original, 80/10/10: see
    `keras_transformer.data.families.masked_lm_dataset`). The head is a dense
    layer with GELU and a LayerNorm, then the backbone's token embedding in
    reverse (tied, as in BERT), so only positions asked for are projected to
    the vocabulary.

    Args:
        backbone: a `TransformerEncoderModel`; its vocabulary includes the
            mask token.

    Call arguments:
        inputs: dict with `"token_ids"` `(B, T)` and `"mask_positions"`
            `(B, P)` int positions to predict (and `"segment_ids"` `(B, T)`
            for a backbone with segments) (padded entries are ignored by
            the loss through their label 0).
        training: whether dropout is active.

    Returns:
        `(B, P, vocabulary_size)` logits.

    Example:
    >>> backbone = keras_transformer.models.TransformerEncoderModel.from_preset("tiny", vocabulary_size=100)
    >>> mlm = keras_transformer.TransformerMaskedLM(backbone)
    >>> mlm({"token_ids": keras.ops.ones((2, 9), "int32"),
    ...      "mask_positions": keras.ops.zeros((2, 3), "int32")}).shape
    (2, 3, 100)
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        hidden_dim = backbone.hidden_dim
        self.transform = keras.layers.Dense(hidden_dim, activation="gelu", dtype=self.dtype_policy, name="transform")
        self.transform.build((None, None, hidden_dim))
        self.transform_norm = keras.layers.LayerNormalization(
            epsilon=backbone.layer_norm_epsilon, dtype=self.dtype_policy, name="transform_norm"
        )
        self.transform_norm.build((None, None, hidden_dim))
        self._leave_unused_pooler(False)
        self.built = True

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict) or {"token_ids", "mask_positions"} - set(inputs):
            raise ValueError('`TransformerMaskedLM` takes a dict with "token_ids" and "mask_positions".')
        segment_ids = inputs.get("segment_ids")
        hidden = self.backbone(inputs["token_ids"], training=training, segment_ids=segment_ids)  # (B, T, d)
        positions = ops.cast(inputs["mask_positions"], "int32")[:, :, None]  # (B, P, 1)
        hidden = ops.take_along_axis(hidden, ops.repeat(positions, hidden.shape[-1], axis=-1), axis=1)  # (B, P, d)
        hidden = self.transform_norm(self.transform(hidden))
        return ops.cast(self.backbone.embedding.token_embedding(hidden, reverse=True), "float32")
