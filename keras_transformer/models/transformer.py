import keras
from keras import ops

from keras_transformer.decoding.generate import Generator
from keras_transformer.layers.masks import padding_mask
from keras_transformer.models.base import ArchitectureModel
from keras_transformer.models.common import make_embedding, stack_arguments
from keras_transformer.models.transformer_decoder import TransformerDecoder, stack_cache
from keras_transformer.models.transformer_encoder import TransformerEncoder
from keras_transformer.vocabulary import START_ID

INPUT_KEYS = ("encoder_token_ids", "decoder_token_ids")


@keras.saving.register_keras_serializable(package="keras_transformer")
class Transformer(ArchitectureModel):
    """The encoder-decoder Transformer of "Attention Is All You Need".

    Source ids are embedded (`* sqrt(d_model)`, plus positions, dropout),
    encoded by `N` encoder layers; target ids, shifted right behind the start
    token, are embedded the same way and decoded by `N` decoder layers that
    attend causally to themselves and to the encoder output; a final linear
    layer gives logits over the target vocabulary (softmax is left to the
    loss and to decoding). Token id 0 is padding everywhere.

    Args:
        source_vocabulary_size: source vocabulary size.
        target_vocabulary_size: target vocabulary size.
        num_layers: `N`, layers in each of the encoder and decoder stacks.
        hidden_dim: `d_model`.
        num_heads: `h`.
        intermediate_dim: `d_ff`.
        dropout: `P_drop`, on embedding sums and every sub-block output.
        max_sequence_length: longest source or target sequence; the size of
            learned position tables.
        position: `"sinusoidal"` (the paper), `"learned"`, `"relative"`
            (Shaw et al. 2018, in self-attention) or `"rotary"` (RoPE).
        normalize_first: pre-norm layers instead of the paper's post-norm.
        tie_embeddings: share the target embedding with the pre-softmax
            linear layer.
        share_embeddings: one embedding matrix for source and target (a joint
            vocabulary; both sizes must match). With `tie_embeddings` this is
            the paper's three-way sharing.
        attention_dropout: dropout on attention weights (0 in the paper).
        activation_dropout: dropout on the feed-forward's inner activations
            (0 in the paper).
        activation: feed-forward activation (`"relu"` in the paper).
        layer_norm_epsilon: LayerNorm epsilon.
        max_relative_position: clipping distance `k` for `"relative"`.
        position_layout: the sinusoid's layout: `"interleaved"` (the
            paper) or `"concatenated"` (Marian / OPUS-MT; see
            `SinusoidalPositionEncoding`).
        output_bias: a fixed (not trained) bias on the logits, as Marian's
            `final_logits_bias` (see `TokenEmbedding`).
        scale_embeddings: multiply token embeddings by `sqrt(d_model)`
            (the paper; `False` as BERT and GPT-2).
        embedding_norm: a LayerNorm on each stack's summed token and
            position embeddings, before dropout (BERT's).
        segment_vocabulary_size: number of segment (token type) ids whose
            learned embedding is added to every token's (BERT's two
            sentences); 0 for none. Inputs without segment ids read
            segment 0 (see `TransformerEncoderModel`).
        zero_start_embedding: the decoder's start token embeds to zeros
            (plus its position), as Marian and CTranslate2 start decoding;
            source ids never hold the start id, so a shared embedding reads
            sources unchanged.

    Call arguments:
        inputs: dict with `"encoder_token_ids"` `(B, S)` and
            `"decoder_token_ids"` `(B, T)`, integer ids below the vocabulary
            sizes, `S, T <= max_sequence_length` (a `ValueError` otherwise;
            ids out of range are an error on CPU). Map unknown words to id 1.
        training: whether dropout is active.
        return_attention_scores: also return the attention weights of every
            layer and head (see `attention_scores`).

    Returns:
        `(B, T, target_vocabulary_size)` logits; with
        `return_attention_scores`, `(logits, {"encoder_self_attention": [..],
        "decoder_self_attention": [..], "cross_attention": [..]})`, one
        `(B, h, ., .)` array per layer.

    Example:
    >>> model = keras_transformer.Transformer.from_preset(
    ...     "tiny", source_vocabulary_size=100, target_vocabulary_size=120)
    >>> logits = model({"encoder_token_ids": keras.ops.ones((2, 9), "int32"),
    ...                 "decoder_token_ids": keras.ops.ones((2, 7), "int32")})
    >>> logits.shape
    (2, 7, 120)
    """

    default_label_smoothing = 0.1
    token_labels = True

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        tie_embeddings=False,
        share_embeddings=False,
        zero_start_embedding=False,
        **kwargs,
    ):
        super().__init__(
            kwargs, source_vocabulary_size=source_vocabulary_size, target_vocabulary_size=target_vocabulary_size
        )
        if share_embeddings and source_vocabulary_size != target_vocabulary_size:
            raise ValueError(
                "`share_embeddings=True` needs one joint vocabulary. Received: "
                f"source_vocabulary_size={source_vocabulary_size}, "
                f"target_vocabulary_size={target_vocabulary_size}"
            )
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.tie_embeddings = tie_embeddings
        self.share_embeddings = share_embeddings
        self.zero_start_embedding = zero_start_embedding

        def embedding(vocabulary_size, tie_weights, name, output_bias=None):
            return make_embedding(
                self.architecture, vocabulary_size, tie_weights, self.dtype_policy, name, output_bias=output_bias,
                zero_start=zero_start_embedding,
            )  # fmt: skip

        stack_kwargs = stack_arguments(self.architecture, self.dtype_policy)
        if share_embeddings:
            self.encoder_embedding = embedding(source_vocabulary_size, tie_embeddings, "shared_embedding")
            self.decoder_embedding = self.encoder_embedding
        else:
            # The source matrix is never used in reverse, so it is always "tied".
            self.encoder_embedding = embedding(source_vocabulary_size, True, "encoder_embedding", output_bias=False)
            self.decoder_embedding = embedding(target_vocabulary_size, tie_embeddings, "decoder_embedding")
        self.encoder = TransformerEncoder(name="encoder", **stack_kwargs)
        self.decoder = TransformerDecoder(name="decoder", **stack_kwargs)
        # All weights exist from construction: shapes never depend on data.
        self.build()
        self._generator = Generator(self)

    def build(self, input_shape=None):
        self.encoder_embedding.build((None, None))
        self.decoder_embedding.build((None, None))
        self.encoder.build((None, None, self.hidden_dim))
        self.decoder.build((None, None, self.hidden_dim), (None, None, self.hidden_dim))
        self.built = True

    def encode(self, encoder_token_ids, training=None, return_attention_scores=False):
        """Run the encoder: returns `(encoder_output (B, S, d_model), padding mask (B, S))`.

        With `return_attention_scores`, a third value: the list of each
        layer's `(B, h, S, S)` self-attention weights.
        """
        mask = padding_mask(encoder_token_ids)
        x = self.encoder_embedding(encoder_token_ids, training=training)
        outputs = self.encoder(x, padding_mask=mask, return_attention_scores=return_attention_scores, training=training)
        if return_attention_scores:
            outputs, scores = outputs
            return outputs, mask, scores
        return outputs, mask

    def decode(
        self, decoder_token_ids, encoder_output, encoder_padding_mask, training=None, return_attention_scores=False
    ):
        """Run the decoder over a whole target prefix: `(B, T, V)` logits.

        With `return_attention_scores`, `(logits, scores)`: per layer a dict
        `{"self_attention": (B, h, T, T), "cross_attention": (B, h, T, S)}`.
        """
        x = self.decoder_embedding(decoder_token_ids, training=training)
        x = self.decoder(
            x,
            encoder_output,
            decoder_padding_mask=padding_mask(decoder_token_ids),
            encoder_padding_mask=encoder_padding_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        if return_attention_scores:
            x, scores = x
            return self.logits(x), scores
        return self.output_logits(x, training)

    def logits(self, hidden_states):
        """The final linear layer: `(B, T, d_model)` to `(B, T, V)`."""
        return self.decoder_embedding.token_embedding(hidden_states, reverse=True)

    def initialize_cache(self, encoder_output, max_length, stacked=False):
        """Caches for incremental decoding of up to `max_length` target tokens.

        Returns:
            `(self_attention_cache, cross_attention_cache)`: tuples of `2N`
            tensors (layer `i`'s keys at `2i`, its values at `2i + 1`), zeros
            of `(B, max_length, h, d_k)` and the encoder output's projected
            keys and values `(B, S, h, d_k)`. With `stacked=True`, each as one
            `(B, 2N, T, h, d_k)` tensor (`cache_shapes`), which
            `call_with_cache` also accepts and returns as given.
        """
        batch_size = ops.shape(encoder_output)[0]
        caches = (
            self.decoder.initialize_self_attention_cache(batch_size, max_length),
            self.decoder.compute_cross_attention_cache(encoder_output),
        )
        return tuple(stack_cache(cache) for cache in caches) if stacked else caches

    def cache_shapes(self, max_length, source_length=None):
        """Shapes of the stacked caches without the batch axis (what `decode_step` signatures declare).

        Returns:
            `(self_attention (2N, max_length, h, d_k), cross_attention (2N,
            source_length, h, d_k))`; `source_length` may be `None`.
        """
        return self.decoder.cache_shape(max_length), self.decoder.cache_shape(source_length)

    def call_with_cache(
        self,
        decoder_token_ids,
        self_attention_cache,
        cross_attention_cache,
        cache_update_index,
        encoder_padding_mask,
    ):
        """One decoding step: logits of `decoder_token_ids` at `cache_update_index`.

        Each new token costs one step: keys and values of earlier positions
        come from the cache.

        Args:
            decoder_token_ids: `(B, t)`, usually `t = 1`.
            self_attention_cache, cross_attention_cache: from
                `initialize_cache` or the previous step.
            cache_update_index: position of the first of `decoder_token_ids`.
            encoder_padding_mask: `(B, S)` from `encode`.

        Returns:
            `(logits (B, t, V), self_attention_cache, cross_attention_cache)`.
        """
        x = self.decoder_embedding(decoder_token_ids, start_index=cache_update_index)
        x, self_attention_cache, cross_attention_cache = self.decoder(
            x,
            encoder_padding_mask=encoder_padding_mask,
            self_attention_cache=self_attention_cache,
            self_attention_cache_update_index=cache_update_index,
            cross_attention_cache=cross_attention_cache,
        )
        return self.logits(x), self_attention_cache, cross_attention_cache

    def generate(self, encoder_token_ids, **settings):
        """Decode target token ids for a batch of source ids.

        Args:
            encoder_token_ids: `(B, S)` int source ids, 0-padded.
            **settings: the fields of
                `keras_transformer.decoding.GenerationSettings`:
                `max_length` (default `max_sequence_length`), `method`
                (`"greedy"`, `"beam"` or `"sample"`), `beam_size`,
                `length_penalty`, `length_penalty_form`, `exact_stop`,
                `temperature`, `top_k`,
                `top_p`, `seed`;
                and `return_attention_scores` (greedy and sample): also
                return the attention weights that produced each token, as
                `attention_scores` gives them.

        Returns:
            Greedy and sample: `(B, max_length)` int32 ids, each row ending
            with the end token (unless cut at `max_length`) and padded with 0
            after it. Beam: `(token_ids (B, K, max_length), scores (B, K))`,
            the n-best lists, best first, with length-normalised
            log-probabilities. With `return_attention_scores`,
            `(token_ids, scores)`.
        """
        if not settings.pop("return_attention_scores", False):
            return self._generator(encoder_token_ids, **settings)
        if settings.get("method", "greedy") == "beam":
            raise ValueError(
                "`return_attention_scores` works with greedy and sample decoding; for beam search call "
                "`attention_scores(encoder_token_ids, token_ids[:, 0])` on the best beam."
            )
        token_ids = self._generator(encoder_token_ids, **settings)
        return token_ids, self.attention_scores(encoder_token_ids, token_ids)

    def call(self, inputs, training=None, return_attention_scores=False):
        if not isinstance(inputs, dict) or any(key not in inputs for key in INPUT_KEYS):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"`Transformer` takes a dict with keys {INPUT_KEYS}, int token ids with 0 as "
                f"padding. Received: {received}"
            )
        for key in INPUT_KEYS:
            self.check_token_ids(key, inputs[key])
        if not return_attention_scores:
            encoder_output, encoder_padding_mask = self.encode(inputs["encoder_token_ids"], training)
            return self.decode(inputs["decoder_token_ids"], encoder_output, encoder_padding_mask, training)
        encoder_output, encoder_padding_mask, encoder_scores = self.encode(
            inputs["encoder_token_ids"], training, return_attention_scores=True
        )
        logits, decoder_scores = self.decode(
            inputs["decoder_token_ids"], encoder_output, encoder_padding_mask, training, return_attention_scores=True
        )
        return logits, {
            "encoder_self_attention": list(encoder_scores),
            "decoder_self_attention": [layer["self_attention"] for layer in decoder_scores],
            "cross_attention": [layer["cross_attention"] for layer in decoder_scores],
        }

    def attention_scores(self, encoder_token_ids, target_token_ids):
        """The attention weights with which the model reads a source and produces a target.

        One teacher-forced pass over `[start] target[:-1]`: with the causal
        mask this is exactly the attention of each step of decoding
        `target_token_ids` (e.g. the output of `generate`).

        Args:
            encoder_token_ids: `(B, S)` source ids, 0-padded.
            target_token_ids: `(B, T)` target ids as `generate` returns them
                (ending with the end token, then 0).

        Returns:
            A dict of lists, one `(B, h, ., .)` array per layer:
            `"encoder_self_attention"` `(B, h, S, S)`,
            `"decoder_self_attention"` `(B, h, T, T)` and `"cross_attention"`
            `(B, h, T, S)`; row `t` is what produced target token `t`.
        """
        target_token_ids = ops.convert_to_tensor(target_token_ids, "int32")
        start = ops.full((ops.shape(target_token_ids)[0], 1), START_ID, "int32")
        decoder_token_ids = ops.concatenate([start, target_token_ids[:, :-1]], axis=1)
        inputs = {"encoder_token_ids": encoder_token_ids, "decoder_token_ids": decoder_token_ids}
        return self(inputs, training=False, return_attention_scores=True)[1]

    def default_optimizer(self, learning_rate=None, warmup_steps=4000):
        """The paper's Adam (beta_2 0.98, epsilon 1e-9) on the warm-up schedule."""
        from keras_transformer.optimizers import transformer_adam

        return transformer_adam(self.hidden_dim, warmup_steps=warmup_steps, learning_rate=learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            source_vocabulary_size=self.source_vocabulary_size,
            target_vocabulary_size=self.target_vocabulary_size,
            tie_embeddings=self.tie_embeddings,
            share_embeddings=self.share_embeddings,
            zero_start_embedding=self.zero_start_embedding,
        )
        return config
