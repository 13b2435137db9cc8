import keras

from keras_transformer.checks import check_bool
from keras_transformer.layers.masks import padding_mask
from keras_transformer.models.base import ArchitectureModel
from keras_transformer.models.common import make_embedding, stack_arguments
from keras_transformer.models.transformer_encoder import TransformerEncoder


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerEncoderModel(ArchitectureModel):
    """An encoder-only Transformer (BERT-like): token ids to contextual vectors.

    The backbone of `TransformerClassifier`, `TransformerTagger` and
    `TransformerMaskedLM`: the encoder half of `Transformer` (token embedding
    `* sqrt(d_model)`, positions, dropout, `N` encoder layers), with padding
    (id 0) masked. Pre-train it with `TransformerMaskedLM`, or take a trained
    translation model's encoder with `from_transformer`, then fine-tune a
    task model built on it.

    Args:
        vocabulary_size: number of token ids.
        num_layers, hidden_dim, num_heads, intermediate_dim, dropout,
        max_sequence_length, position, normalize_first, attention_dropout,
        activation_dropout, activation, layer_norm_epsilon,
        max_relative_position, scale_embeddings, embedding_norm,
        segment_vocabulary_size: as in `keras_transformer.Transformer`.
        pooler: a tanh dense layer (`pooler`) that `pool` applies to the
            first position's vector: BERT's pooled output, which a
            `TransformerClassifier` with `pooling="pooler"` reads. Not part
            of `call`.

    Call arguments:
        token_ids: `(B, T)` int ids, 0-padded, `T <= max_sequence_length`.
        training: whether dropout is active.
        segment_ids: `(B, T)` int segment (token type) ids, with
            `segment_vocabulary_size > 0`; `None` reads segment 0.

    Returns:
        `(B, T, hidden_dim)`.

    Example:
    >>> backbone = keras_transformer.models.TransformerEncoderModel.from_preset("tiny", vocabulary_size=100)
    >>> backbone(keras.ops.ones((2, 9), "int32")).shape
    (2, 9, 64)
    """

    def __init__(self, vocabulary_size, pooler=False, **kwargs):
        super().__init__(kwargs, vocabulary_size=vocabulary_size)
        check_bool(pooler, "pooler")
        self.vocabulary_size = vocabulary_size
        self.embedding = make_embedding(self.architecture, vocabulary_size, True, self.dtype_policy, "embedding")
        self.encoder = TransformerEncoder(name="encoder", **stack_arguments(self.architecture, self.dtype_policy))
        self.pooler = None
        if pooler:
            self.pooler = keras.layers.Dense(self.hidden_dim, activation="tanh", dtype=self.dtype_policy, name="pooler")
        self.build()

    @classmethod
    def from_transformer(cls, transformer):
        """The encoder of a trained `keras_transformer.Transformer`, weights copied.

        The result reads the translation model's source vocabulary.
        """
        backbone = cls(transformer.source_vocabulary_size, dtype=transformer.dtype_policy, **transformer.architecture)
        source = transformer.encoder_embedding
        backbone.embedding.token_embedding.embeddings.assign(source.token_embedding.embeddings)
        if source.position_encoding is not None:
            backbone.embedding.position_encoding.set_weights(source.position_encoding.get_weights())
        backbone.encoder.set_weights(transformer.encoder.get_weights())
        return backbone

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.encoder.build((None, None, self.hidden_dim))
        if self.pooler is not None:
            self.pooler.build((None, self.hidden_dim))
        self.built = True

    def call(self, token_ids, training=None, segment_ids=None):
        self.check_token_ids("token_ids", token_ids)
        if segment_ids is not None:
            if not self.segment_vocabulary_size:
                raise ValueError("`segment_ids` given to a model without segments (segment_vocabulary_size=0)")
            shapes = tuple(segment_ids.shape), tuple(token_ids.shape)
            if shapes[0] != shapes[1] and None not in shapes[0] + shapes[1]:
                raise ValueError(f"`segment_ids` must have the shape of `token_ids` {tuple(token_ids.shape)}. "
                                 f"Received: shape={tuple(segment_ids.shape)}")  # fmt: skip
        x = self.embedding(token_ids, training=training, segment_ids=segment_ids)
        return self.encoder(x, padding_mask=padding_mask(token_ids), training=training)

    def pool(self, hidden_states):
        """BERT's pooled output: `pooler` (tanh dense) of the first position's vector, `(B, hidden_dim)`."""
        if self.pooler is None:
            raise ValueError("This backbone has no pooler (build it with `pooler=True`)")
        return self.pooler(hidden_states[:, 0, :])

    @property
    def transformer_layers(self):
        """The encoder layers, bottom first (what `freeze(model, up_to=k)` counts)."""
        return self.encoder.transformer_layers

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, pooler=self.pooler is not None)
        return config
