"""The exported functions of a translation model, as one `tf.Module`.

Shared by the SavedModel and TFLite exporters. Every function runs the
library's own decoding code (`keras_transformer.decoding`): the encoder once,
then the key/value-cached step inside one `tf.while_loop`, so the exported
model needs no Python loop and, for TFLite, only built-in ops.

Signatures (`B` any batch size, `S` source length, `T` target length):

- `generate(encoder_token_ids (B, S) int32) -> token_ids (B, T)`: greedy.
- `beam_search(encoder_token_ids) -> token_ids (B, K, T), scores (B, K)`.
- `encode(encoder_token_ids) -> self_attention_cache, cross_attention_cache`
  and `decode_step(token_ids (B, 1), index (), self_attention_cache,
  cross_attention_cache, encoder_token_ids) -> logits (B, V),
  self_attention_cache`: the loop's pieces, for apps that drive it.
- `logits(encoder_token_ids, decoder_token_ids) -> logits (B, T, V)`:
  the teacher-forced forward pass.
- `translate(text (B,) string) -> translation (B,)` (and `translate_beam`):
  tokenizer, decoding and detokenizer in the graph.

Ids outside the vocabulary (`encoder_token_ids`, `token_ids`,
`decoder_token_ids`) are refused with an `InvalidArgumentError` (SavedModel),
or, with `flag_out_of_range` (TFLite), read as the unknown token and counted
in an extra output `out_of_range_ids (B,)`.
"""

import tensorflow as tf

from .module import ExportModule
from keras_transformer.data.tokenizers import appends_end, model_ids
from keras_transformer.decoding import beam_search, greedy_search
from keras_transformer.layers.masks import padding_mask


class TranslationModule(ExportModule):
    """A trained `Transformer` (and its tokenizers) as exportable functions.

    Args:
        model: a `keras_transformer.Transformer`.
        source_tokenizer, target_tokenizer: the run's tokenizers (text
            signatures only).
        fixed_source_length: pad/declare sources at exactly the model's
            `max_sequence_length` (TFLite: static shapes); otherwise any
            length up to it.
        freeze: read the weights as graph constants rather than variables
            (TFLite: the converter keeps variables read inside a while loop
            as uninitialised resources).
        beam_size, length_penalty, length_penalty_form: the beam search
            settings (`keras_transformer.decoding.beam_search`).
        flag_out_of_range: see `ExportModule` (TFLite: ids outside the
            vocabulary read as unknown and counted in `out_of_range_ids`;
            otherwise refused).
        int8_embeddings: look token embeddings up in int8 (TFLite's dynamic
            int8, see `ExportModule`).
        frozen_values: values to freeze some variables to (see `ExportModule`).
    """

    def __init__(
        self,
        model,
        source_tokenizer=None,
        target_tokenizer=None,
        fixed_source_length=False,
        freeze=False,
        beam_size=4,
        length_penalty=0.6,
        flag_out_of_range=False,
        int8_embeddings=False,
        frozen_values=None,
        length_penalty_form="gnmt",
    ):
        super().__init__(model, model.max_sequence_length, freeze, flag_out_of_range, int8_embeddings, frozen_values)
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.length_penalty_form = length_penalty_form
        source = self.max_length if fixed_source_length else None
        ids = tf.TensorSpec([None, source], tf.int32, name="encoder_token_ids")
        self.generate = tf.function(self._generate, input_signature=[ids])
        self.beam_search = tf.function(self._beam_search, input_signature=[ids])
        self.encode = tf.function(self._encode, input_signature=[ids])
        self_cache_shape, cross_cache_shape = model.cache_shapes(self.max_length, source)
        self.decode_step = tf.function(
            self._decode_step,
            input_signature=[
                tf.TensorSpec([None, 1], tf.int32, name="token_ids"),
                tf.TensorSpec([], tf.int32, name="index"),
                tf.TensorSpec([None, *self_cache_shape], tf.float32, name="self_attention_cache"),
                tf.TensorSpec([None, *cross_cache_shape], tf.float32, name="cross_attention_cache"),
                ids,
            ],
        )
        self.logits = tf.function(
            self._logits,
            input_signature=[ids, tf.TensorSpec([None, None], tf.int32, name="decoder_token_ids")],
        )
        if source_tokenizer is None or target_tokenizer is None:
            return
        text = tf.TensorSpec([None], tf.string, name="text")
        self.translate = tf.function(lambda text: self._translate(text, beam=False), input_signature=[text])
        self.translate_beam = tf.function(lambda text: self._translate(text, beam=True), input_signature=[text])

    def _source(self, encoder_token_ids):
        """Sources checked for length and id range: `(ids, extra outputs)`."""
        with tf.control_dependencies([self.check_length(encoder_token_ids)]):
            return self.check_ids("encoder_token_ids", encoder_token_ids, self.model.source_vocabulary_size)

    def _generate(self, encoder_token_ids):
        source, extra = self._source(encoder_token_ids)
        with self.weight_scope():
            return {"token_ids": greedy_search(self.model, source, self.max_length), **extra}

    def _beam_search(self, encoder_token_ids):
        source, extra = self._source(encoder_token_ids)
        with self.weight_scope():
            token_ids, scores = self._beam(source)
        return {"token_ids": token_ids, "scores": scores, **extra}

    def _beam(self, source):
        """The module's beam search: `(token_ids, scores)`."""
        return beam_search(
            self.model, source, self.max_length, self.beam_size, self.length_penalty,
            length_penalty_form=self.length_penalty_form,
        )  # fmt: skip

    def _encode(self, encoder_token_ids):
        source, extra = self._source(encoder_token_ids)
        with self.weight_scope():
            encoder_output, _ = self.model.encode(source)
            self_cache, cross_cache = self.model.initialize_cache(encoder_output, self.max_length, stacked=True)
        return {"self_attention_cache": self_cache, "cross_attention_cache": cross_cache, **extra}

    def _decode_step(self, token_ids, index, self_attention_cache, cross_attention_cache, encoder_token_ids):
        # `encoder_token_ids` only marks the source's padding here: its ids are not looked up.
        token_ids, extra = self.check_ids("token_ids", token_ids, self.model.target_vocabulary_size)
        with self.weight_scope():
            logits, self_attention_cache, _ = self.model.call_with_cache(
                token_ids, self_attention_cache, cross_attention_cache, index, padding_mask(encoder_token_ids)
            )
        return {"logits": logits[:, 0], "self_attention_cache": self_attention_cache, **extra}

    def _logits(self, encoder_token_ids, decoder_token_ids):
        source, source_extra = self._source(encoder_token_ids)
        with tf.control_dependencies([self.check_length(decoder_token_ids)]):
            target, target_extra = self.check_ids(
                "decoder_token_ids", decoder_token_ids, self.model.target_vocabulary_size
            )
        extra = {key: value + target_extra[key] for key, value in source_extra.items()}
        with self.weight_scope():
            inputs = {"encoder_token_ids": source, "decoder_token_ids": target}
            return {"logits": self.model(inputs, training=False), **extra}

    def _best_ids(self, source, beam):
        """`(B, max_length)` ids: greedy, or the best beam's."""
        with self.weight_scope():
            if beam:
                return self._beam(source)[0][:, 0]
            return greedy_search(self.model, source, self.max_length)

    def _translate(self, text, beam):
        """Sentences of no piece (empty, blank, control characters) give empty translations; longer ones are truncated."""
        pieces = self.source_tokenizer.tokenize(text)
        # As the text TFLite and the Translator decide it: no piece (a Marian source: only its end id).
        blank = pieces.row_lengths() <= int(appends_end(self.source_tokenizer))
        source = tf.cast(model_ids(self.source_tokenizer, pieces, self.max_length), tf.int32)
        # A batch of blank sentences is still a (B, 1) source.
        source = tf.pad(source, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(source)[1])]])
        translation = self.target_tokenizer.detokenize(self._best_ids(source, beam))
        return {"translation": tf.where(blank, tf.constant(""), translation)}
