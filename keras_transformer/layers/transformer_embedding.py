import keras
from keras import ops

from keras_transformer.layers.position_embedding import PositionEmbedding
from keras_transformer.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_transformer.layers.token_embedding import TokenEmbedding
from keras_transformer.checks import check_bool, check_non_negative_int, check_positive_int, check_rate
from keras_transformer.vocabulary import START_ID

ABSOLUTE_POSITIONS = ("sinusoidal", "learned", "none")


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerEmbedding(keras.layers.Layer):
    """Input embedding of a stack: scaled tokens + positions, then dropout.

    `Dropout(TokenEmbedding(ids) * sqrt(d_model) + PE)` as in sections 3.4,
    3.5 and 5.4. Relative and rotary positions live inside attention; for
    them use `position="none"` here. BERT's embedding is
    `Dropout(LayerNorm(TokenEmbedding(ids) + PE + SegmentEmbedding(segment
    ids)))`: `scale=False, normalize=True, segment_vocabulary_size=2`;
    GPT-2's `scale=False`.

    Args:
        vocabulary_size: number of token ids.
        hidden_dim: `d_model`.
        max_sequence_length: positions a learned table holds.
        position: `"sinusoidal"`, `"learned"` or `"none"`.
        dropout: dropout on the sum.
        tie_weights: share the token matrix with the output projection.
        embeddings_initializer: token embedding initializer (see
            `TokenEmbedding`).
        position_layout: where a sinusoid's sines and cosines go
            (`"interleaved"`, the paper, or `"concatenated"`, Marian's; see
            `SinusoidalPositionEncoding`).
        output_bias: a fixed bias on the logits of the reverse (output)
            projection (see `TokenEmbedding`).
        zero_start: the start id embeds to zeros (positions are still
            added): a decoder that starts from a zero embedding, as Marian
            and CTranslate2 do.
        scale: multiply the token embedding by `sqrt(d_model)` (the paper;
            BERT and GPT-2 do not).
        normalize: a LayerNorm on the sum, before dropout (BERT's).
        layer_norm_epsilon: that LayerNorm's epsilon.
        segment_vocabulary_size: number of segment (token type) ids with a
            learned embedding added to the tokens'; 0 for none.

    Call arguments:
        token_ids: `(B, T)` int ids.
        start_index: position of the first token (cached decoding).
        training: whether dropout is active.
        segment_ids: `(B, T)` int segment ids below
            `segment_vocabulary_size`; `None` reads segment 0 everywhere.

    Returns:
        `(B, T, d_model)`.

    Example:
    >>> embed = keras_transformer.layers.TransformerEmbedding(1000, 64, 128)
    >>> embed(keras.ops.ones((2, 7), "int32")).shape
    (2, 7, 64)
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        max_sequence_length,
        position="sinusoidal",
        dropout=0.0,
        tie_weights=True,
        embeddings_initializer=None,
        position_layout="interleaved",
        output_bias=False,
        zero_start=False,
        scale=True,
        normalize=False,
        layer_norm_epsilon=1e-5,
        segment_vocabulary_size=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_non_negative_int(segment_vocabulary_size, "segment_vocabulary_size")
        check_positive_int(max_sequence_length, "max_sequence_length")
        check_rate(dropout, "dropout")
        check_bool(zero_start, "zero_start")
        check_bool(scale, "scale")
        check_bool(normalize, "normalize")
        if position not in ABSOLUTE_POSITIONS:
            raise ValueError(
                f"`position` must be one of {ABSOLUTE_POSITIONS}. Received: position={position!r}"
            )
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.max_sequence_length = max_sequence_length
        self.position = position
        self.dropout = dropout
        self.tie_weights = tie_weights
        self.position_layout = position_layout
        self.output_bias = output_bias
        self.zero_start = zero_start
        self.scale = scale
        self.normalize = normalize
        self.layer_norm_epsilon = layer_norm_epsilon
        self.segment_vocabulary_size = segment_vocabulary_size
        self.embeddings_initializer = (
            None if embeddings_initializer is None else keras.initializers.get(embeddings_initializer)
        )
        self.token_embedding = TokenEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_weights,
            embeddings_initializer=self.embeddings_initializer,
            output_bias=output_bias,
            scale_embeddings=scale,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_encoding = None
        if position == "sinusoidal":
            self.position_encoding = SinusoidalPositionEncoding(
                layout=position_layout, dtype=self.dtype_policy, name="position_encoding"
            )
        elif position == "learned":
            self.position_encoding = PositionEmbedding(
                max_sequence_length, dtype=self.dtype_policy, name="position_embedding"
            )
        self.segment_embedding = None
        if segment_vocabulary_size:
            self.segment_embedding = keras.layers.Embedding(
                segment_vocabulary_size, hidden_dim, dtype=self.dtype_policy, name="segment_embedding"
            )
        self.layer_norm = None
        if normalize:
            self.layer_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
            )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, token_ids_shape):
        self.token_embedding.build(token_ids_shape)
        if self.position_encoding is not None:
            self.position_encoding.build(tuple(token_ids_shape) + (self.hidden_dim,))
        if self.segment_embedding is not None:
            self.segment_embedding.build(token_ids_shape)
        if self.layer_norm is not None:
            self.layer_norm.build(tuple(token_ids_shape) + (self.hidden_dim,))
        self.built = True

    def call(self, token_ids, start_index=0, training=None, segment_ids=None):
        x = self.token_embedding(token_ids)  # (B, T, d_model)
        if self.zero_start:
            x = x * ops.cast(ops.not_equal(token_ids, START_ID), x.dtype)[..., None]
        if self.position_encoding is not None:
            x = x + self.position_encoding(x, start_index=start_index)
        if self.segment_embedding is not None:
            if segment_ids is None:  # segment 0 everywhere: its one row
                x = x + ops.cast(self.segment_embedding.embeddings[0], x.dtype)
            else:
                x = x + self.segment_embedding(segment_ids)
        elif segment_ids is not None:
            raise ValueError("`segment_ids` given to an embedding without segments (segment_vocabulary_size=0)")
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.dropout_layer(x, training=training)

    def compute_output_shape(self, token_ids_shape):
        return tuple(token_ids_shape) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "max_sequence_length": self.max_sequence_length,
                "position": self.position,
                "dropout": self.dropout,
                "tie_weights": self.tie_weights,
                "position_layout": self.position_layout,
                "output_bias": self.output_bias,
                "zero_start": self.zero_start,
                "scale": self.scale,
                "normalize": self.normalize,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "segment_vocabulary_size": self.segment_vocabulary_size,
                "embeddings_initializer": None
                if self.embeddings_initializer is None
                else keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
