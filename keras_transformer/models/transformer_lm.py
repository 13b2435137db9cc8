import keras

from keras_transformer.decoding.generate import Generator
from keras_transformer.decoding.language_model import lm_greedy_search, lm_sample
from keras_transformer.layers.masks import padding_mask
from keras_transformer.models.base import ArchitectureModel
from keras_transformer.models.common import make_embedding, stack_arguments
from keras_transformer.models.transformer_decoder import TransformerDecoder


@keras.saving.register_keras_serializable(package="keras_transformer")
class TransformerLM(ArchitectureModel):
    """A decoder-only Transformer language model (GPT-like).

    Token embedding (`* sqrt(d_model)`), positions, `N` decoder layers with
    causal self-attention and no cross-attention, and the output layer over
    the vocabulary, tied to the token embedding by default. Trained on next
    tokens: inputs `[start] w1 .. wn`, labels `w1 .. wn [end]`
    (`keras_transformer.data.families.language_model_dataset`).

    Args:
        vocabulary_size: number of token ids.
        tie_embeddings: share the token embedding with the output layer.
        num_layers, hidden_dim, num_heads, intermediate_dim, dropout,
        max_sequence_length, position, normalize_first, attention_dropout,
        activation_dropout, activation, layer_norm_epsilon,
        max_relative_position: as in
            `keras_transformer.Transformer`.

    Call arguments:
        token_ids: `(B, T)` int ids, 0-padded on the right.
        training: whether dropout is active.

    Returns:
        `(B, T, vocabulary_size)` next-token logits.

    Example:
    >>> lm = keras_transformer.TransformerLM.from_preset("tiny", vocabulary_size=100)
    >>> lm(keras.ops.ones((2, 9), "int32")).shape
    (2, 9, 100)
    >>> lm.generate(keras.ops.ones((2, 3), "int32"), max_length=8).shape
    (2, 8)
    """

    token_labels = True

    def __init__(self, vocabulary_size, tie_embeddings=True, **kwargs):
        super().__init__(kwargs, vocabulary_size=vocabulary_size)
        self.vocabulary_size = vocabulary_size
        self.tie_embeddings = tie_embeddings
        self.embedding = make_embedding(
            self.architecture, vocabulary_size, tie_embeddings, self.dtype_policy, "embedding"
        )
        self.decoder = TransformerDecoder(
            name="decoder", cross_attention=False, **stack_arguments(self.architecture, self.dtype_policy)
        )
        self.build()
        self._generator = Generator(
            self,
            vocabulary_size,
            searches={"greedy": lm_greedy_search, "sample": lm_sample},
            input_name="prompt_ids",
            static_length=True,
        )

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.decoder.build((None, None, self.hidden_dim))
        self.built = True

    @property
    def transformer_layers(self):
        """The decoder layers, bottom first (what `freeze(model, up_to=k)` counts)."""
        return self.decoder.transformer_layers

    def call(self, token_ids, training=None):
        self.check_token_ids("token_ids", token_ids)
        x = self.embedding(token_ids, training=training)
        x = self.decoder(x, decoder_padding_mask=padding_mask(token_ids), training=training)
        return self.output_logits(x, training)

    def logits(self, hidden_states):
        """The output layer: `(B, T, d_model)` to `(B, T, V)` float32 logits."""
        return keras.ops.cast(self.embedding.token_embedding(hidden_states, reverse=True), "float32")

    def initialize_cache(self, batch_size, max_length):
        """Zero caches for up to `max_length` positions: `2N` `(B, max_length, h, d_k)` tensors."""
        return self.decoder.initialize_self_attention_cache(batch_size, max_length)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Logits of `token_ids` `(B, t)` at positions from `cache_update_index`, keys
        and values of earlier positions read from `cache`: `(logits (B, t, V), cache)`.

        `cache` may also be the stacked `(B, 2N, T_max, h, d_k)` form
        (`keras_transformer.models.stack_cache`), returned the same way.
        """
        x = self.embedding(token_ids, start_index=cache_update_index)
        x, cache, _ = self.decoder(x, self_attention_cache=cache, self_attention_cache_update_index=cache_update_index)
        return self.logits(x), cache

    def generate(self, prompt_ids=None, batch_size=1, **settings):
        """Continue prompts, one cached step per new token.

        Args:
            prompt_ids: `(B, P)` int ids after the start token (which is
                added here), 0-padded on the right; `None`: `batch_size`
                rows generated from the start token alone.
            batch_size: rows to generate when `prompt_ids` is `None`.
            **settings: the fields of
                `keras_transformer.decoding.GenerationSettings`: `max_length`
                (the most tokens per row, prompt included; default
                `max_sequence_length`), `method` (`"greedy"` or `"sample"`),
                `temperature`, `top_k`, `top_p`, `seed`.

        Returns:
            `(B, max_length)` int32: each prompt, then its continuation up to
            and including the end token, then 0.
        """
        max_length = settings.get("max_length")
        max_length = self.max_sequence_length if max_length is None else max_length
        if prompt_ids is None:
            prompt_ids = keras.ops.zeros((batch_size, 0), "int32")
        prompt_ids = keras.ops.convert_to_tensor(prompt_ids)
        if len(prompt_ids.shape) == 2 and prompt_ids.shape[1] > max_length:
            raise ValueError(
                f"`prompt_ids` has {prompt_ids.shape[1]} tokens, more than max_length={max_length}."
            )
        return self._generator(prompt_ids, **settings)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, tie_embeddings=self.tie_embeddings)
        return config
