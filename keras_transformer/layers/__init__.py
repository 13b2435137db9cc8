"""The Transformer's layers, part by part (see the README for the paper's figure)."""

from keras_transformer.layers.feed_forward import FeedForward, gelu_approximate
from keras_transformer.layers.masks import (
    causal_mask,
    combine_masks,
    mask_value,
    merge_padding_and_attention_mask,
    padding_mask,
)
from keras_transformer.layers.multi_head_attention import MultiHeadAttention
from keras_transformer.layers.position_embedding import PositionEmbedding
from keras_transformer.layers.relative_position_embedding import RelativePositionEmbedding
from keras_transformer.layers.residual import Residual
from keras_transformer.layers.rotary_embedding import RotaryEmbedding
from keras_transformer.layers.scaled_dot_product_attention import (
    attention_weights,
    scaled_dot_product_attention,
)
from keras_transformer.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_transformer.layers.token_embedding import TokenEmbedding
from keras_transformer.layers.transformer_decoder_layer import TransformerDecoderLayer
from keras_transformer.layers.transformer_embedding import TransformerEmbedding
from keras_transformer.layers.transformer_encoder_layer import TransformerEncoderLayer
