"""TFLite with text in and text out: the tokenizer runs inside the model.

`model_text.tflite` (float32) and `model_text_dynamic_int8.tflite` hold the
signatures `translate(text (B,) string) -> translation (B,) string` (greedy)
and `translate_beam` (beam search), with tokenization, the whole decoding
loop and detokenization in one graph. For classify and tag runs (asked for
by name) they hold `classify_text -> label, probabilities` or
`tag_text -> tags` (`TextFamilyModule`). Besides TFLite's built-in ops they use
tensorflow-text's TFLite kernels (custom ops named `TFText>...` and
`RaggedTensorToTensor`), so the interpreter must be given tensorflow-text's
op registerers:

    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    import tensorflow_text
    interpreter = InterpreterWithCustomOps(
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS,
        model_path="model_text.tflite")

An Android or iOS app links tensorflow-text's TFLite kernels
(`//tensorflow_text/core/kernels:tflite_ops` built with the app, or the ops
it names registered with `MutableOpResolver::AddCustom`) next to LiteRT; no
Flex delegate (select TensorFlow ops) is needed.

How text becomes ids, per tokenizer kind:

- WordPiece: `WhitespaceTokenizer` then `FastWordpieceTokenizer` (the same
  vocabulary and settings as training). Unlike the run's own tokenizer,
  CJK characters are not split into words of their own (no regex op exists in
  TFLite), so CJK text without spaces becomes `[UNK]` words.
- BERT (an imported BERT's `vocab.txt`): `FastBertNormalizer` (lower-case
  and strip accents, when the tokenizer does both) then
  `FastWordpieceTokenizer` splitting at whitespace and punctuation itself.
  Unlike the run's tokenizer, control and format characters are not removed
  the same way, full-width and compatibility characters are folded, and the
  100-character word limit is 400 bytes; a tokenizer that lower-cases
  without stripping accents (or the reverse) is refused.
- SentencePiece: `FastSentencepieceTokenizer` over the run's model proto.
- Marian (an imported OPUS-MT run): `FastSentencepieceTokenizer` over the
  source side's model, its ids mapped onto the vocabulary's by a table, the
  end id after each sentence. A piece SentencePiece marks unknown is unknown
  (the run's own tokenizer, like transformers', looks the unknown text up in
  the vocabulary first); language codes (`>>fra<<`) cannot be read without
  a regex op, so a vocabulary holding them is refused.

Ids become text through a table of each piece's surface string (`##`
suffixes glued, `▁` as a space, byte pieces as bytes) joined with
tensorflow-text's `ngrams` string join, which TFLite runs; tensorflow-text's
SentencePiece detokenizer kernel crashes the interpreter, so it is not used.
Sources longer than `max_sequence_length` pieces are truncated; blank
sentences translate to "".
"""

import re

import tensorflow as tf
import tensorflow_text as tf_text

from . import pairing
from .base import Exporter, register
from .converter import convert
from .errors import ExportError
from .family_module import FamilyModule
from .flatbuffer import operators
from .tflite import rounded_kernels
from .translation_module import TranslationModule
from keras_transformer.data.tokenizers import appends_end
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID, UNKNOWN_ID

SIGNATURES = ("translate", "translate_beam")
# tensorflow-text's TFLite kernels whose names lack the "TFText>" prefix.
TFTEXT_OPS = (
    "FastWordpieceTokenizeWithOffsets", "FastWordpieceDetokenize", "RaggedTensorToTensor", "FastBertNormalize",
)
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def in_graph_tokenizer(tokenizer):
    """`text (B,) -> ragged ids (B, None)` using only ops TFLite can run."""
    if tokenizer.kind == "wordpiece":
        words = tf_text.WhitespaceTokenizer()
        pieces = tf_text.FastWordpieceTokenizer(
            vocab=tokenizer.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            no_pretokenization=True,
            token_out_type=tf.int32,
        )
        return lambda text: pieces.tokenize(words.tokenize(text)).merge_dims(-2, -1)
    if tokenizer.kind == "bert":
        strip_accents = tokenizer.lowercase if tokenizer.strip_accents is None else tokenizer.strip_accents
        if strip_accents != tokenizer.lowercase:
            raise ExportError(
                f"the BERT tokenizer {'lower-cases' if tokenizer.lowercase else 'keeps case'} and "
                f"{'strips' if strip_accents else 'keeps'} accents, which tensorflow-text's TFLite normaliser cannot "
                "do (it lower-cases and strips accents together, or neither); export the ids TFLite (tflite)"
            )
        normalizer = tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=True) if tokenizer.lowercase else None
        pieces = tf_text.FastWordpieceTokenizer(
            vocab=tokenizer.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            no_pretokenization=False,  # BERT's own splitting at whitespace and punctuation
            max_bytes_per_word=4 * tokenizer.max_word_characters,
            token_out_type=tf.int32,
        )
        return lambda text: pieces.tokenize(text if normalizer is None else normalizer.normalize(text))
    if tokenizer.kind == "sentencepiece":
        pieces = tf_text.FastSentencepieceTokenizer(tokenizer.proto)
        return pieces.tokenize
    if tokenizer.kind == "marian":
        if tokenizer.language_codes:
            raise ExportError(
                f"the source vocabulary holds language codes ({tokenizer.language_codes[0]}, ...), which the text "
                "TFLite cannot read; export the ids TFLite (tflite) and tokenize in the app"
            )
        pieces = tf_text.FastSentencepieceTokenizer(tokenizer.proto)
        to_ids = tf.constant(tokenizer.to_ids)
        return lambda text: tf.ragged.map_flat_values(tf.gather, to_ids, pieces.tokenize(text))
    raise ExportError(f"No in-graph TFLite tokenizer for {tokenizer.kind!r} tokenizers.")


def surface_strings(tokenizer):
    """Each id's text after an earlier piece, then as the first piece: `2V` byte strings.

    Reserved ids (pad, unknown, start, end) and SentencePiece control pieces
    are empty. As the run's own detokenizers write them: a WordPiece
    continuation (`##ing`) that comes first keeps its `##`; SentencePiece
    drops every space before the first piece with text (a lone "▁" first is
    empty).
    """
    if tokenizer.kind == "wordpiece":
        pieces = [piece.encode("utf-8") for piece in tokenizer.vocabulary]
        later = [piece[2:] if piece.startswith(b"##") else b" " + piece for piece in pieces]
        first = list(pieces)
    elif tokenizer.kind in ("sentencepiece", "marian"):
        ids = tf.range(tokenizer.vocabulary_size)
        if tokenizer.kind == "marian":  # the target model's pieces, in the vocabulary's id order ("" if it lacks one)
            ids = tf.constant(tokenizer.to_pieces)
        spm_pieces = tokenizer.tokenizer.id_to_string(tf.maximum(ids, 0)).numpy().tolist()
        pieces = [piece if i >= 0 else b"<unk>" for piece, i in zip(spm_pieces, ids.numpy().tolist())]
        later = []
        for piece in pieces:
            match = BYTE_PIECE.match(piece.decode("utf-8", "replace"))
            later.append(bytes([int(match.group(1), 16)]) if match else piece.replace("\u2581".encode(), b" "))
        control = ("<s>", "</s>", "<pad>", "<unk>")
        later = [b"" if piece.decode("utf-8", "replace") in control else text for piece, text in zip(pieces, later)]
        first = [text.lstrip(b" ") for text in later]
    else:
        raise ExportError(f"No in-graph TFLite detokenizer for {tokenizer.kind!r} tokenizers.")
    later[: END_ID + 1] = [b""] * (END_ID + 1)
    first[: END_ID + 1] = [b""] * (END_ID + 1)
    return later + first


def detokenize_in_graph(strings, token_ids):
    """`(B, T)` generated ids to `(B,)` text, stopping at each row's end token."""
    vocabulary_size = len(strings) // 2
    length = token_ids.shape[1]
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(token_ids, END_ID), tf.int32), axis=1), 0)
    keep = before_end & (token_ids > END_ID)
    token_ids = tf.where(keep, token_ids, PAD_ID)  # (B, T), dropped ids read as ""
    # Pieces up to the first one with text as a first piece (a lone "▁" has none) take their first form.
    has_text = tf.gather(tf.constant([int(len(text) > 0) for text in strings[vocabulary_size:]]), token_ids)  # (B, T)
    first = tf.argmax(has_text, axis=1, output_type=tf.int32)  # (B,)
    first = tf.where(tf.reduce_max(has_text, axis=1) > 0, first, length)  # no text at all: every piece leads
    leading = tf.range(length)[None] <= first[:, None]  # (B, T)
    pieces = tf.gather(tf.constant(strings), tf.where(leading, token_ids + vocabulary_size, token_ids))
    # One `length`-gram per row joins the row; TensorFlow's kernel for a dense input crashes on
    # batches over ~10 rows, so the rows go in as a ragged tensor (TFLite runs either).
    row_splits = tf.range(tf.shape(pieces, out_type=tf.int64)[0] + 1) * length
    rows = tf.RaggedTensor.from_row_splits(tf.reshape(pieces, [-1]), row_splits, validate=False)
    joined = tf_text.ngrams(rows, length, reduction_type=tf_text.Reduction.STRING_JOIN, string_separator="")
    return joined.flat_values  # (B,)


class TextTranslationModule(TranslationModule):
    """`translate` and `translate_beam` over text, for TFLite."""

    def __init__(
        self, model, source_tokenizer, target_tokenizer, beam_size=4, length_penalty=0.6, int8_embeddings=False,
        kernels=None, length_penalty_form="gnmt",
    ):  # fmt: skip
        super().__init__(
            model, fixed_source_length=True, freeze=True, beam_size=beam_size, length_penalty=length_penalty,
            int8_embeddings=int8_embeddings, frozen_values=kernels, length_penalty_form=length_penalty_form,
        )  # fmt: skip
        self._tokenize = in_graph_tokenizer(source_tokenizer)
        self._appends_end = appends_end(source_tokenizer)
        self._strings = surface_strings(target_tokenizer)
        text = tf.TensorSpec([None], tf.string, name="text")
        self.translate = tf.function(lambda text: self._translate_text(text, beam=False), input_signature=[text])
        self.translate_beam = tf.function(lambda text: self._translate_text(text, beam=True), input_signature=[text])

    def _translate_text(self, text, beam):
        pieces = self._tokenize(text)
        lengths = tf.cast(pieces.row_lengths(), tf.int32)  # (B,)
        blank = tf.equal(lengths, 0)
        source = tf.cast(pieces.to_tensor(PAD_ID, shape=[None, self.max_length]), tf.int32)  # truncates
        if self._appends_end:  # the end id after the last piece, or in the last place when cut
            last = tf.minimum(lengths, self.max_length - 1)
            column = tf.range(self.max_length)[None, :]
            source = tf.where(tf.equal(column, last[:, None]), END_ID, source)
        token_ids = tf.where(blank[:, None], END_ID, self._best_ids(source, beam))
        return {"translation": detokenize_in_graph(self._strings, token_ids)}


class _InGraphTokenizer:
    """`tokenize` with TFLite-runnable ops only (`in_graph_tokenizer`), where `FamilyModule` reads a tokenizer."""

    def __init__(self, tokenizer):
        self.tokenize = in_graph_tokenizer(tokenizer)


class TextFamilyModule(FamilyModule):
    """A classifier's `classify_text` or a tagger's `tag_text` over text, for TFLite (`FamilyModule`'s, TFLite ops)."""

    def __init__(self, run, int8_embeddings=False):
        super().__init__(run, fixed_length=True, freeze=True, flag_out_of_range=True, int8_embeddings=int8_embeddings)
        self.tokenizer = _InGraphTokenizer(run.source_tokenizer)
        text = tf.TensorSpec([None], tf.string, name="text")
        function = self._classify_text if self.family == "classify" else self._tag_text
        setattr(self, f"{self.family}_text", tf.function(function, input_signature=[text]))

    def _wrap(self, token_ids):
        """`FamilyModule._wrap` with TFLite's ops: `[start] ids [end]` `(B, max_length)`, and the kept lengths."""
        length = self.max_length
        ids = tf.cast(token_ids.to_tensor(PAD_ID, shape=[None, length - 2]), tf.int32)  # truncates
        kept = tf.minimum(tf.cast(token_ids.row_lengths(), tf.int32), length - 2)
        start = tf.fill(tf.stack([tf.shape(ids)[0], 1]), START_ID)
        ids = tf.concat([start, ids, tf.zeros_like(start)], axis=1)  # room for the end token
        return ids + tf.one_hot(kept + 1, length, on_value=END_ID, off_value=0, dtype=tf.int32), kept

    def _tag_text(self, text):
        """One tag per whitespace-separated word (its first piece's), as `FamilyModule`'s, with TFLite's ops."""
        words = tf_text.WhitespaceTokenizer().tokenize(text)  # (B, W) ragged
        pieces = self.tokenizer.tokenize(words.flat_values)  # (words, pieces)
        first = tf.cast(pieces.to_tensor(UNKNOWN_ID, shape=[None, 1])[:, 0], tf.int32)
        ids, lengths = self._wrap(words.with_flat_values(first))
        tag_ids = self._tag(ids)["tag_ids"][:, 1:]  # word j at column j
        # "" past each sentence's words, as a gather from the names and "" (TFLite selects no strings).
        past = len(self.labels)
        tag_ids = tf.where(tf.sequence_mask(lengths, self.max_length - 1), tag_ids, past)
        return {"tags": tf.gather(tf.constant([*self.labels, ""]), tag_ids)}


def _refuse_other_custom_ops(flatbuffer, format):
    """An `ExportError` when the converted model needs ops outside TFLite's built-ins and tensorflow-text's kernels."""
    custom = operators(flatbuffer, custom_only=True)
    unexpected = [name for name in custom if not name.startswith("TFText>") and name not in TFTEXT_OPS]
    if unexpected:
        raise ExportError(f"{format}: the converted model needs ops outside TFLite and tensorflow-text: {unexpected}.")


class TextExporter(Exporter):
    """A text-in/text-out `.tflite` file of a translation run."""

    families = ("translate",)
    quantization = None

    def export(self, run, path):
        options = self.options
        module = TextTranslationModule(
            run.model, run.source_tokenizer, run.target_tokenizer, options.beam_size, options.length_penalty,
            int8_embeddings=self.quantization == "dynamic_int8",
            kernels=rounded_kernels(run, options, self.quantization), length_penalty_form=options.length_penalty_form,
        )  # fmt: skip
        flatbuffer = convert(
            module, SIGNATURES, self.quantization, allow_custom_ops=True,
            metadata={pairing.METADATA_NAME: pairing.encoded(run)},
        )  # fmt: skip
        _refuse_other_custom_ops(flatbuffer, self.format)
        with open(path, "wb") as f:
            f.write(flatbuffer)


@register
class TextFloat32Exporter(TextExporter):
    format, filename = "tflite_text", "model_text.tflite"


@register
class TextDynamicInt8Exporter(TextExporter):
    """Not written by `train.py` by default."""

    format, filename, quantization = "tflite_text_dynamic_int8", "model_text_dynamic_int8.tflite", "dynamic_int8"
    default = False


class FamilyTextExporter(Exporter):
    """A classify or tag run's text-in `.tflite` file: `classify_text -> label, probabilities` or `tag_text -> tags`.

    Asked for by name (neither default nor in "all"): TFLite has no regex op,
    so text is split with tensorflow-text's TFLite kernels, which read some
    text differently from the run's own tokenizer (see the module notes).
    """

    families = ("classify", "tag")
    quantization = None
    default = False
    in_all = False

    def export(self, run, path):
        module = TextFamilyModule(run, int8_embeddings=self.quantization == "dynamic_int8")
        flatbuffer = convert(
            module, (f"{run.family}_text",), self.quantization, allow_custom_ops=True,
            metadata={pairing.METADATA_NAME: pairing.encoded(run)},
        )  # fmt: skip
        _refuse_other_custom_ops(flatbuffer, self.format)
        with open(path, "wb") as f:
            f.write(flatbuffer)


@register
class FamilyTextFloat32Exporter(FamilyTextExporter):
    format, filename = "tflite_text", "model_text.tflite"


@register
class FamilyTextDynamicInt8Exporter(FamilyTextExporter):
    format, filename, quantization = "tflite_text_dynamic_int8", "model_text_dynamic_int8.tflite", "dynamic_int8"


VARIANTS = {cls.format: cls.filename for cls in (TextFloat32Exporter, TextDynamicInt8Exporter)}
