"""The exported functions of classifiers, taggers and language models, as one `tf.Module`.

Signatures (`B` any batch size, `L` the model's `max_sequence_length`):

- classifier: `classify(token_ids (B, L)) -> probabilities (B, C)`;
  SavedModel also `classify_text(text (B,)) -> label (B,), probabilities`.
- tagger: `tag(token_ids (B, L)) -> tag_ids (B, L)` (0 at padding),
  `probabilities (B, L, K)`; SavedModel also `tag_text(text) -> tags
  (B, L - 1)` strings, one per whitespace-separated word, "" after the last.
- language model: `generate(prompt_ids (B, L)) -> token_ids (B, L)`
  (greedy, the whole cached loop inside; prompts 0-padded on the right, all
  zeros to generate from the start token alone) and `logits(token_ids) ->
  logits`; SavedModel also `generate_text(prompt (B,)) -> text (B,)`.

Token ids are what `keras_transformer.data.families` makes: encoder inputs
`[start] tokens [end]`, 0-padded; SavedModel takes any length up to `L`,
TFLite exactly `L`. The text signatures tokenize in the graph with the run's
tokenizer, so loading the SavedModel needs `import tensorflow_text`.
Ids outside the vocabulary are refused with an `InvalidArgumentError`
(SavedModel), or, with `flag_out_of_range` (TFLite), read as the unknown
token and counted in an extra output `out_of_range_ids (B,)`.
"""

import tensorflow as tf

from .module import ExportModule
from keras_transformer.decoding.language_model import lm_greedy_search
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID, UNKNOWN_ID

SIGNATURES = {"classify": ("classify",), "tag": ("tag",), "lm": ("generate", "logits")}
TEXT_SIGNATURES = {"classify": "classify_text", "tag": "tag_text", "lm": "generate_text"}


class FamilyModule(ExportModule):
    """A trained classifier, tagger or language model as exportable functions.

    Args:
        run: an `export.Run` of a classify, tag or lm run.
        fixed_length: declare ids of exactly `max_sequence_length` (TFLite).
        freeze: read weights as graph constants (TFLite, see `ExportModule`).
        text: add the text-in signature (SavedModel).
        flag_out_of_range: see `ExportModule` (TFLite: ids outside the
            vocabulary read as unknown and counted in `out_of_range_ids`;
            otherwise refused).
        int8_embeddings: look token embeddings up in int8 (TFLite's dynamic
            int8, see `ExportModule`).
    """

    def __init__(self, run, fixed_length=False, freeze=False, text=False, flag_out_of_range=False, int8_embeddings=False):
        super().__init__(run.model, run.max_length, freeze, flag_out_of_range, int8_embeddings)
        self.family, self.labels = run.family, run.labels
        self.vocabulary_size = getattr(run.model, "backbone", run.model).vocabulary_size
        self.tokenizer = run.source_tokenizer
        # Lookup tables the tokenizer reads (GPT-2's BPE), tracked so that the text signatures save.
        self.tokenizer_resources = list(getattr(self.tokenizer, "resources", list)())
        functions = {
            "classify": {"classify": self._classify, "classify_text": self._classify_text},
            "tag": {"tag": self._tag, "tag_text": self._tag_text},
            "lm": {"generate": self._generate, "logits": self._logits, "generate_text": self._generate_text},
        }[self.family]
        length = self.max_length if fixed_length else None
        for name, function in functions.items():
            if name.endswith("_text"):
                if text:
                    setattr(self, name, tf.function(function, input_signature=[tf.TensorSpec([None], tf.string)]))
                continue
            spec = tf.TensorSpec([None, length], tf.int32, name="prompt_ids" if name == "generate" else "token_ids")
            setattr(self, name, tf.function(function, input_signature=[spec]))

    def _classify(self, token_ids):
        token_ids, extra = self.check_ids("token_ids", token_ids, self.vocabulary_size)
        with self.weight_scope():
            return {"probabilities": tf.nn.softmax(self.model(token_ids, training=False)), **extra}

    def _tag(self, token_ids):
        token_ids, extra = self.check_ids("token_ids", token_ids, self.vocabulary_size)
        with self.weight_scope():
            probabilities = tf.nn.softmax(self.model(token_ids, training=False))
        tag_ids = tf.cast(tf.argmax(probabilities[:, :, 1:], axis=-1), tf.int32) + 1  # never the padding tag
        tag_ids = tf.where(tf.equal(token_ids, PAD_ID), 0, tag_ids)
        return {"tag_ids": tag_ids, "probabilities": probabilities, **extra}

    def _generate(self, prompt_ids):
        prompt_ids, extra = self.check_ids("prompt_ids", self.pad_to_max_length(prompt_ids), self.vocabulary_size)
        with self.weight_scope():
            return {"token_ids": lm_greedy_search(self.model, prompt_ids, self.max_length), **extra}

    def _logits(self, token_ids):
        token_ids, extra = self.check_ids("token_ids", token_ids, self.vocabulary_size)
        with self.weight_scope():
            return {"logits": self.model(token_ids, training=False), **extra}

    def _wrap(self, token_ids):
        """Ragged `(B, n)` ids as `[start] ids [end]`, 0-padded to `max_length`."""
        token_ids = tf.cast(token_ids[:, : self.max_length - 2], tf.int32)
        start = tf.fill(tf.stack([token_ids.nrows(), 1]), START_ID)
        ids = tf.concat([start, token_ids.to_tensor(PAD_ID)], axis=1)
        ids = self.pad_to_max_length(tf.pad(ids, [[0, 0], [0, 1]]))  # room for the end token
        end = tf.one_hot(token_ids.row_lengths() + 1, self.max_length, on_value=END_ID, off_value=0, dtype=tf.int32)
        return ids + end, token_ids.row_lengths()

    def _classify_text(self, text):
        ids, _ = self._wrap(self.tokenizer.tokenize(text))
        probabilities = self._classify(ids)["probabilities"]
        label = tf.gather(tf.constant(self.labels), tf.argmax(probabilities, axis=-1))
        return {"label": label, "probabilities": probabilities}

    def _tag_text(self, text):
        """One tag per whitespace-separated word (its first subword's)."""
        words = tf.strings.split(tf.strings.strip(text))  # (B, W) ragged
        pieces = self.tokenizer.tokenize(words.flat_values)  # (words, pieces)
        first = tf.cast(pieces.to_tensor(UNKNOWN_ID, shape=[None, 1])[:, 0], tf.int32)
        ids, lengths = self._wrap(words.with_flat_values(first))
        tag_ids = self._tag(ids)["tag_ids"][:, 1:]  # word j at column j
        names = tf.gather(tf.constant(self.labels), tag_ids)
        return {"tags": tf.where(tf.sequence_mask(lengths, self.max_length - 1), names, "")}

    def _generate_text(self, text):
        prompt = tf.cast(self.tokenizer.tokenize(text)[:, : self.max_length - 1], tf.int32).to_tensor(PAD_ID)
        return {"text": self.tokenizer.detokenize(self._generate(prompt)["token_ids"])}
