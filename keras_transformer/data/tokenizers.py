"""Subword tokenizers trained on the user's corpus, built on keras-hub.

Every kind uses the project's reserved ids: 0 pad, 1 unknown, 2 start, 3 end.

- `SentencePieceTokenizer` (keras-hub `compute_sentence_piece_proto` and
  tensorflow-text's `SentencepieceTokenizer`, unigram by default): lossless up to NFKC
  normalisation (e.g. full-width forms become ASCII) and runs of whitespace
  becoming one space.
- `MarianTokenizer` (a Marian / OPUS-MT checkpoint's, read by
  `keras_transformer.pretrained`): one side's SentencePiece model with the
  checkpoint's `vocab.json`, which gives the ids, mapped onto the reserved ids.
- `BertTokenizer` (a BERT checkpoint's `vocab.txt`, read by
  `keras_transformer.pretrained`): transformers' `BertTokenizer` rules
  (cleaning, lower-casing and accents as the checkpoint says, punctuation
  and CJK splitting) before tensorflow-text's `FastWordpieceTokenizer`.
- `Gpt2Tokenizer` (a GPT-2 checkpoint's `vocab.json` and `merges.txt`):
  keras-hub's `BytePairTokenizer`, transformers' `GPT2Tokenizer` ids mapped
  onto the reserved ids (`<|endoftext|>` is the start and the end).
- `WordPieceTokenizer` (keras-hub `compute_word_piece_vocabulary` and
  tensorflow-text's `FastWordpieceTokenizer`): words are split on whitespace only, and each CJK
  character is a word of its own, so punctuation becomes `##` suffix pieces
  and detokenizes back in place. Round trip is lossless up to: runs of
  whitespace become one space, leading/trailing whitespace and spaces between
  two CJK characters are dropped, and a word containing a character never
  seen in training (or over 100 bytes) becomes `[UNK]` as a whole.

`tokenize` and `detokenize` are TensorFlow graph ops (usable in `tf.data`
and, later, inside exported models).
"""

import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile

import keras_hub
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_transformer.checks import check_positive_int
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNKNOWN_ID

# Chinese, Japanese kana, Korean and CJK punctuation: written without spaces.
CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\x{3000}-\x{303F}\x{FF00}-\x{FFEF}]"


def _strip_special(token_ids):
    """Ids before the first end token, without padding/start: ragged `(B, None)`."""
    token_ids = tf.convert_to_tensor(token_ids) if not isinstance(token_ids, tf.RaggedTensor) else token_ids
    if isinstance(token_ids, tf.RaggedTensor):
        token_ids = token_ids.to_tensor(PAD_ID)
    token_ids = tf.cast(token_ids, tf.int32)
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(token_ids, END_ID), tf.int32), axis=-1), 0)
    keep = before_end & (token_ids > END_ID)
    return tf.ragged.boolean_mask(token_ids, keep)


class Tokenizer:
    """Common interface: `tokenize`, `detokenize`, `save`, `load`, `train`."""

    kind = None
    # Whether `tokenize` ends every sentence with the end id (a Marian source side): a blank sentence is then
    # that one id, not none.
    appends_end = False

    @property
    def vocabulary_size(self):
        raise NotImplementedError

    def tokenize(self, text):
        """`(B,)` strings to ragged `(B, None)` int32 ids (no start/end)."""
        raise NotImplementedError

    def detokenize(self, token_ids):
        """`(B, L)` ids to `(B,)` strings, stopping at each row's end token."""
        raise NotImplementedError

    def id_to_token(self, token_id):
        """The piece of one id, as the vocabulary spells it (e.g. for attention plots)."""
        raise NotImplementedError

    def fingerprint(self):
        """A SHA-256 of what gives the ids their meaning (the model or vocabulary): equal tokenizers, equal prints."""
        return hashlib.sha256(self.kind.encode() + b"\n" + self._identity()).hexdigest()

    def _identity(self):
        raise NotImplementedError

    @classmethod
    def train(cls, lines, vocabulary_size):
        """A tokenizer of `vocabulary_size` pieces learnt from `lines` (a list of strings)."""
        lines = _check_lines(lines)
        with tempfile.TemporaryDirectory(prefix="kt-tokenizer-") as directory:
            path = write_lines(os.path.join(directory, "lines.txt"), lines)
            return cls.train_files([path], vocabulary_size, len(lines))

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None):
        """A tokenizer learnt from UTF-8 text files, one sentence per line (`count` lines, for messages).

        The trainers read the files themselves, so the caller needs not hold
        the lines in memory meanwhile.
        """
        raise NotImplementedError

    def save(self, directory, name):
        """Write the tokenizer's files under `directory`; returns its metadata."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory, metadata):
        raise NotImplementedError


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence SentencePiece's trainer, which logs hundreds of lines from C++."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def write_lines(path, lines):
    """Write `lines` to `path`, one per line (a line's own newlines become spaces); returns `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line.replace("\n", " ").replace("\r", " ") + "\n" for line in lines)
    return path


def _check_lines(lines):
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError("Cannot train a tokenizer on no text: every line is empty.")
    return lines


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece subwords (unigram or BPE) with the project's reserved ids."""

    kind = "sentencepiece"

    def __init__(self, proto, append_end=False):
        self.proto = proto
        self.append_end = bool(append_end)  # end every sentence with the end id (a Marian-compatible source side)
        self.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)

    @property
    def appends_end(self):
        return self.append_end

    def with_end(self):
        """The same tokenizer, ending every sentence with the end id (as Marian's source side does)."""
        return SentencePieceTokenizer(self.proto, append_end=True)

    @property
    def vocabulary_size(self):
        return int(self.tokenizer.vocab_size())

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None, model_type="unigram"):
        # From files SentencePiece reads in C++: 6x faster than from a tf.data stream of the lines.
        try:
            with _quiet_native_stderr():
                proto = keras_hub.tokenizers.compute_sentence_piece_proto(
                    list(paths), vocabulary_size, model_type=model_type
                )
        except RuntimeError as error:
            raise ValueError(
                f"SentencePiece could not build a vocabulary of {vocabulary_size} pieces from "
                f"{count if count is not None else 'the'} lines. Change the vocabulary size or give more text. "
                f"SentencePiece: {error}"
            ) from None
        return cls(_without_training_paths(proto))


    def _run(self, method, inputs):
        """Call the op, owning its model resource where it runs.

        tf.random.set_seed (and so keras.utils.set_random_seed) clears
        TensorFlow's eager kernel cache, which deletes an eager op's model
        resource. Traced code (tf.data, tf.function) builds its own op, so the
        graph owns the resource; eager code rebuilds the op when it is gone.
        """
        if not tf.executing_eagerly():
            op = tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.int32)
            return getattr(op, method)(inputs)
        try:
            return getattr(self.tokenizer, method)(inputs)
        except tf.errors.NotFoundError:
            self.tokenizer = tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.int32)
            return getattr(self.tokenizer, method)(inputs)

    def tokenize(self, text):
        ids = self._run("tokenize", text)
        return _end_each(ids, text) if self.append_end else ids

    def id_to_token(self, token_id):
        if token_id < len(RESERVED_TOKENS):
            return RESERVED_TOKENS[token_id]
        return self._run("id_to_string", tf.constant(int(token_id), tf.int32)).numpy().decode("utf-8")

    def detokenize(self, token_ids):
        return self._run("detokenize", _strip_special(token_ids))

    def _identity(self):
        return self.proto + (b"\nappend_end" if self.append_end else b"")

    def save(self, directory, name):
        filename = f"{name}.spm"
        with open(os.path.join(directory, filename), "wb") as f:
            f.write(self.proto)
        return {"kind": self.kind, "file": filename, **({"append_end": True} if self.append_end else {})}

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["file"]), "rb") as f:
            return cls(f.read(), append_end=bool(metadata.get("append_end", False)))


def _end_each(ids, text):
    """Ragged `(B, None)` ids with the end id after each row."""
    end = tf.fill([tf.shape(tf.convert_to_tensor(text))[0], 1], tf.constant(END_ID, ids.dtype))
    return tf.concat([ids, tf.RaggedTensor.from_tensor(end)], axis=1)


def _without_training_paths(proto):
    """The model without the trainer's input file names (temporary paths): one corpus, one file, wherever trained."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
    del model.trainer_spec.input[:]
    model.trainer_spec.ClearField("model_prefix")
    return model.SerializeToString(deterministic=True)


def _split_words(text):
    """Whitespace-separated words, with every CJK character a word of its own."""
    text = tf.strings.regex_replace(text, f"({CJK})", r" \1 ")
    return tf.strings.split(tf.strings.strip(text))


class WordPieceTokenizer(Tokenizer):
    """WordPiece subwords over whitespace-split words (see the module notes)."""

    kind = "wordpiece"

    def __init__(self, vocabulary):
        if tuple(vocabulary[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ValueError(f"A WordPiece vocabulary must start with {list(RESERVED_TOKENS)}.")
        self.vocabulary = list(vocabulary)
        self.tokenizer = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            no_pretokenization=True,
            support_detokenization=True,
            token_out_type=tf.int32,
        )

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None):
        words = tf.data.TextLineDataset(list(paths)).map(_split_words).unbatch()
        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            words.batch(1024),
            vocabulary_size,
            lowercase=False,
            strip_accents=False,
            split=False,
            reserved_tokens=list(RESERVED_TOKENS),
        )
        return cls(vocabulary)

    def id_to_token(self, token_id):
        return self.vocabulary[int(token_id)]

    def tokenize(self, text):
        words = _split_words(tf.convert_to_tensor(text))  # (B, words)
        return self.tokenizer.tokenize(words).merge_dims(-2, -1)  # (B, pieces)

    def detokenize(self, token_ids):
        text = self.tokenizer.detokenize(_strip_special(token_ids))
        # Words were joined with spaces; CJK characters were never spaced.
        for _ in range(2):
            text = tf.strings.regex_replace(text, f"({CJK}) ({CJK})", r"\1\2")
        return text

    def _identity(self):
        return "\n".join(self.vocabulary).encode("utf-8")

    def save(self, directory, name):
        filename = f"{name}.vocab"
        with open(os.path.join(directory, filename), "w", encoding="utf-8") as f:
            f.write("\n".join(self.vocabulary) + "\n")
        return {"kind": self.kind, "file": filename}

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["file"]), encoding="utf-8") as f:
            return cls(f.read().split("\n")[:-1])


_BUCKETS = 2**62  # fingerprints of piece texts (MarianTokenizer.lookup)


def appends_end(tokenizer):
    """Whether `tokenizer` ends each sentence with the end id (any object with `tokenize` may be a tokenizer)."""
    return bool(getattr(tokenizer, "appends_end", False))


def model_ids(tokenizer, pieces, length, full=False):
    """Ragged `(B, None)` ids of `tokenizer` as dense `(B, <= length)` model input, 0-padded.

    Longer sentences are cut to `length`; for a tokenizer that ends each
    sentence with the end id (`appends_end`), a cut sentence still ends with
    it, as Marian truncates. `full`: exactly `length` columns.
    """
    ids = pieces.to_tensor(PAD_ID, shape=[None, length]) if full else pieces[:, :length].to_tensor(PAD_ID)
    if not appends_end(tokenizer):
        return ids
    last = tf.minimum(pieces.row_lengths(), length) - 1  # (B,)
    column = tf.range(tf.shape(ids, out_type=last.dtype)[1])[None, :]
    return tf.where(tf.equal(column, last[:, None]), tf.cast(END_ID, ids.dtype), ids)


def marian_order(size, eos_id, unk_id, pad_id):
    """The Marian id of each of this project's ids, for a Marian vocabulary of `size` pieces.

    This project reserves ids 0-3 (pad, unknown, start, end); Marian ends
    sentences with `eos_id` (0 in OPUS-MT), reads unknown pieces as `unk_id`
    (1) and starts decoding from its pad token, `pad_id` (`size - 1`). So
    ours are `[pad, unk, pad, eos, every other Marian id in order]`: one id
    more than Marian's, the pad piece serving as padding and as the start.
    """
    reserved = (pad_id, unk_id, pad_id, eos_id)
    if len({eos_id, unk_id, pad_id}) != 3 or not all(0 <= i < size for i in reserved):
        raise ValueError(f"Marian's end, unknown and pad ids must be 3 different ids below {size}. "
                         f"Received: eos {eos_id}, unk {unk_id}, pad {pad_id}")  # fmt: skip
    return np.array([*reserved, *(i for i in range(size) if i not in reserved)], "int64")


class MarianTokenizer(SentencePieceTokenizer):
    """One side of a Marian (OPUS-MT) checkpoint's tokenizer, with this project's reserved ids.

    A Marian checkpoint splits text with a SentencePiece model per side
    (`source.spm`, `target.spm`) and gives each piece the id `vocab.json`
    lists it under (one vocabulary for both sides); `marian_order` maps those
    ids onto this project's. As `transformers.MarianTokenizer` does: pieces
    are looked up in the vocabulary by their text (one it lacks is unknown);
    a source sentence ends with the end id (`append_end`); a leading
    language code (`>>fra<<`) is one piece; detokenizing skips the reserved
    ids and joins the pieces with the target model. Not trained here: read with a
    checkpoint (`keras_transformer.pretrained.import_marian`).

    Args:
        proto: the side's serialized SentencePiece model.
        vocabulary: Marian's pieces in Marian id order (`vocab.json`).
        special: `{"eos": id, "unk": id, "pad": id}`, Marian ids.
        append_end: end each tokenized sentence with the end id (the source
            side).
    """

    kind = "marian"

    def __init__(self, proto, vocabulary, special, append_end=False):
        import sentencepiece

        self.proto = proto
        self.append_end = bool(append_end)
        self.vocabulary = list(vocabulary)
        self.special = {name: int(special[name]) for name in ("eos", "unk", "pad")}
        self.order = marian_order(len(self.vocabulary), self.special["eos"], self.special["unk"], self.special["pad"])
        ours = {marian: index for index, marian in enumerate(self.order.tolist()) if index != START_ID}
        index = {piece: ours[marian] for marian, piece in enumerate(self.vocabulary)}
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        spm_pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        # SentencePiece id -> ours, a piece the vocabulary lacks unknown (the text TFLite's table).
        self.to_ids = np.array([index.get(piece, UNKNOWN_ID) for piece in spm_pieces], "int32")
        # Ours -> SentencePiece; -1 for a piece the side's model lacks (a joint vocabulary's other side), which
        # detokenizing drops.
        unknown = processor.unk_id()
        self.to_pieces = np.array(
            [processor.piece_to_id(self.vocabulary[marian]) for marian in self.order], "int32"
        )
        known = [self.to_pieces[i] != unknown or self.vocabulary[m] == processor.id_to_piece(unknown)
                 for i, m in enumerate(self.order)]  # fmt: skip
        self.to_pieces = np.where(known, self.to_pieces, -1).astype("int32")
        self.language_codes = [piece for piece in self.vocabulary if piece.startswith(">>") and piece.endswith("<<")]
        # Pieces are looked up by their text, as MarianTokenizer does: a piece SentencePiece does not know (text it
        # keeps as it is) may still be in the vocabulary (a joint one, from the other side's model). A sorted table
        # of 62-bit fingerprints, searched, then the text compared: constants only, so it runs in tf.data and
        # SavedModels alike.
        texts = list(index)
        hashes = tf.strings.to_hash_bucket_fast(tf.constant(texts, tf.string), _BUCKETS).numpy()
        by_hash = np.argsort(hashes, kind="stable")
        if len(np.unique(hashes)) != len(hashes):
            raise ValueError("two pieces of the vocabulary share a fingerprint; this vocabulary cannot be read")
        self._hashes = hashes[by_hash]
        self._texts = np.array([texts[i].encode("utf-8") for i in by_hash], object)
        self._ids = np.array([index[texts[i]] for i in by_hash], "int32")
        # After SentencePiece's own reading above, which names a corrupt model (tensorflow-text's would not).
        self.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
        self._text_pieces = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.string)

    def lookup(self, pieces):
        """Ids of piece texts (a string tensor of any shape): their vocabulary id, else unknown."""
        pieces = tf.convert_to_tensor(pieces, tf.string)
        flat = tf.reshape(tf.strings.to_hash_bucket_fast(pieces, _BUCKETS), [-1])
        table = tf.constant(self._hashes)
        at = tf.minimum(tf.searchsorted(table, flat), len(self._hashes) - 1)
        found = tf.equal(tf.gather(table, at), flat) & tf.equal(
            tf.gather(tf.constant(self._texts), at), tf.reshape(pieces, [-1])
        )
        ids = tf.where(found, tf.gather(tf.constant(self._ids), at), UNKNOWN_ID)
        return tf.reshape(ids, tf.shape(pieces))

    def _piece_texts(self, text):
        if not tf.executing_eagerly():
            return tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.string).tokenize(text)
        try:
            return self._text_pieces.tokenize(text)
        except tf.errors.NotFoundError:  # see SentencePieceTokenizer._run
            self._text_pieces = tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.string)
            return self._text_pieces.tokenize(text)

    @property
    def sentencepiece_size(self):
        """Pieces of the SentencePiece model (not the vocabulary's ids)."""
        return len(self.to_ids)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary) + 1

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None):
        raise ValueError("A Marian tokenizer comes with its checkpoint; it is not trained here.")

    def tokenize(self, text):
        text = tf.convert_to_tensor(text)
        parts = []
        # ">>xx<<" at the start is one piece (unknown unless the vocabulary has it), as
        # MarianTokenizer.remove_language_code finds it.
        code = tf.strings.regex_replace(text, r"(?s)^(>>.*?<<).*$", r"\1")
        has_code = tf.strings.regex_full_match(text, r"(?s)>>.*?<<.*")
        text = tf.where(has_code, tf.strings.regex_replace(text, r"(?s)^>>.*?<<", ""), text)
        parts.append(tf.ragged.boolean_mask(self.lookup(code)[:, None], has_code[:, None]))
        parts.append(tf.ragged.map_flat_values(self.lookup, self._piece_texts(text)))
        ids = tf.concat(parts, axis=1)
        return _end_each(ids, text) if self.append_end else ids

    def id_to_token(self, token_id):
        if token_id < len(RESERVED_TOKENS):
            return RESERVED_TOKENS[token_id]
        return self.vocabulary[self.order[int(token_id)]]

    def detokenize(self, token_ids):
        pieces = tf.ragged.map_flat_values(tf.gather, tf.constant(self.to_pieces), _strip_special(token_ids))
        return self._run("detokenize", tf.ragged.boolean_mask(pieces, pieces >= 0))

    def _identity(self):
        settings = {"vocabulary": self.vocabulary, "special": self.special, "append_end": self.append_end}
        return self.proto + b"\n" + json.dumps(settings, sort_keys=True).encode("utf-8")

    def save(self, directory, name):
        files = {"file": f"{name}.spm", "vocabulary": f"{name}.vocab.json"}
        with open(os.path.join(directory, files["file"]), "wb") as f:
            f.write(self.proto)
        with open(os.path.join(directory, files["vocabulary"]), "w", encoding="utf-8") as f:
            json.dump(self.vocabulary, f, ensure_ascii=False)
        return {"kind": self.kind, **files, "special": self.special, "append_end": self.append_end}

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["file"]), "rb") as f:
            proto = f.read()
        try:
            with open(os.path.join(directory, metadata["vocabulary"]), encoding="utf-8") as f:
                vocabulary = json.load(f)
        except ValueError:  # not JSON, not UTF-8
            vocabulary = None
        if not isinstance(vocabulary, list) or not all(isinstance(piece, str) for piece in vocabulary):
            raise TokenizerFileError(f"{metadata['vocabulary']} is not a JSON list of pieces (corrupt or truncated?)")
        try:
            return cls(proto, vocabulary, metadata["special"], metadata.get("append_end", False))
        except RuntimeError:  # SentencePiece's own reading of the model
            raise TokenizerFileError(f"{metadata['file']} is not a valid {cls.kind} model (corrupt or truncated?)") from None


# BERT's word splitting (transformers' `BertPreTokenizer`, tensorflow-text's `BasicTokenizer`): every punctuation
# character (ASCII symbols included) and, with `split_cjk`, every CJK ideograph is a word of its own.
BERT_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
BERT_CJK = (
    r"[\x{4E00}-\x{9FFF}]|[\x{3400}-\x{4DBF}]|[\x{20000}-\x{2A6DF}]|[\x{2A700}-\x{2B73F}]|[\x{2B740}-\x{2B81F}]|"
    r"[\x{2B820}-\x{2CEAF}]|[\x{F900}-\x{FAFF}]|[\x{2F800}-\x{2FA1F}]"
)
# Removed before splitting (control, format, private-use and surrogate characters, U+FFFD; not tab or newlines),
# and read as spaces (every separator: U+00A0, U+2028, U+3000, ...), as BERT's normaliser cleans text.
BERT_REMOVED = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\p{Co}\p{Cs}\x{FFFD}]"
BERT_SPACES = r"\p{Z}"
BERT_UNKNOWN_WORD = "\ue000"  # a private-use character (never in text once cleaned): stands for a too-long word
BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # at this project's ids 0-3: padding, unknown, start, end


class BertTokenizer(Tokenizer):
    """A BERT checkpoint's WordPiece tokenizer (`vocab.txt`), with this project's reserved ids.

    Computes what transformers' `BertTokenizer` does: the text is cleaned
    (control and format characters removed, every kind of space read as
    one), lower-cased and stripped of accents (NFD, combining marks
    removed) as the checkpoint's `tokenizer_config.json` says, split into
    words at whitespace, at every punctuation character and around each CJK
    ideograph, and each word split into the longest WordPiece pieces
    (tensorflow-text's `FastWordpieceTokenizer`); a word of more than 100
    characters, or one the pieces cannot spell, is `[UNK]`. Unassigned code
    points are kept (transformers removes them). Not trained here: read
    with a checkpoint (`keras_transformer.pretrained.import_bert`).

    Args:
        vocabulary: the pieces in this project's id order: `[PAD]`,
            `[UNK]`, `[CLS]`, `[SEP]`, then the rest (see
            `pretrained.bert.bert_order`).
        lowercase: lower-case the text (`do_lower_case`).
        strip_accents: remove accents (`strip_accents`; `None`: as
            `lowercase`, transformers' default).
        split_cjk: each CJK ideograph a word (`tokenize_chinese_chars`).
    """

    kind = "bert"
    max_word_characters = 100

    def __init__(self, vocabulary, lowercase=True, strip_accents=None, split_cjk=True):
        if tuple(vocabulary[: len(BERT_SPECIAL)]) != BERT_SPECIAL:
            raise ValueError(f"A BERT vocabulary in this project's order starts with {list(BERT_SPECIAL)}.")
        for name, value in (("lowercase", lowercase), ("split_cjk", split_cjk)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
        if strip_accents is not None and not isinstance(strip_accents, bool):
            raise ValueError(f"`strip_accents` must be True, False or None. Received: strip_accents={strip_accents!r}")
        self.vocabulary = list(vocabulary)
        self.lowercase, self.strip_accents, self.split_cjk = lowercase, strip_accents, split_cjk
        words = BERT_PUNCTUATION + ("|" + BERT_CJK if split_cjk else "")
        self._delimiters, self._kept = r"\s+|" + words, words
        self.tokenizer = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            max_bytes_per_word=4 * self.max_word_characters,  # the character limit is applied in `words`
            no_pretokenization=True,
            support_detokenization=True,
            token_out_type=tf.int32,
        )

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None):
        raise ValueError("A BERT tokenizer comes with its checkpoint (kt-import); train a `wordpiece` one instead")

    def words(self, text):
        """`(B,)` strings to ragged `(B, words)`: cleaned, normalised and split as BERT's basic tokenizer does."""
        text = tf.strings.regex_replace(tf.convert_to_tensor(text), BERT_REMOVED, "")
        text = tf.strings.regex_replace(text, BERT_SPACES, " ")
        if self.strip_accents or (self.strip_accents is None and self.lowercase):
            text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        words = tf_text.regex_split(text, self._delimiters, self._kept)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_word_characters
        return words.with_flat_values(tf.where(too_long, BERT_UNKNOWN_WORD, words.flat_values))

    def tokenize(self, text):
        return self.tokenizer.tokenize(self.words(text)).merge_dims(-2, -1)  # (B, pieces)

    def id_to_token(self, token_id):
        return self.vocabulary[int(token_id)]

    def detokenize(self, token_ids):
        """Pieces joined into words, words by single spaces (BERT's own detokenization, lower-cased if it lowers)."""
        return self.tokenizer.detokenize(_strip_special(token_ids))

    def _identity(self):
        settings = json.dumps([self.lowercase, self.strip_accents, self.split_cjk])
        return (settings + "\n" + "\n".join(self.vocabulary)).encode("utf-8")

    def save(self, directory, name):
        filename = f"{name}.bert.vocab"
        with open(os.path.join(directory, filename), "w", encoding="utf-8") as f:
            f.write("\n".join(self.vocabulary) + "\n")
        return {"kind": self.kind, "file": filename, "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "split_cjk": self.split_cjk}  # fmt: skip

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["file"]), encoding="utf-8") as f:
            vocabulary = f.read().split("\n")[:-1]
        return cls(vocabulary, metadata["lowercase"], metadata["strip_accents"], metadata["split_cjk"])


GPT2_END_OF_TEXT = "<|endoftext|>"


def _tensors_out():
    """Within: keras-hub tokenizers return TensorFlow tensors (eagerly they return Python lists)."""
    from keras_hub.src.utils.tensor_utils import no_convert_scope

    return no_convert_scope()


def gpt2_order(size, end_of_text):
    """The GPT-2 id of each of this project's ids (-1: none): `[pad, unknown, start, end, every other GPT-2 id]`.

    GPT-2 has one special token, `<|endoftext|>`, which begins and ends
    documents: it is this project's start and end id (one row twice). GPT-2
    has no padding and, its BPE spelling every byte, no unknown token: ids 0
    and 1 are new (zero embeddings; the importer keeps the unknown id from
    ever being predicted).
    """
    if not 0 <= end_of_text < size:
        raise ValueError(f"the end-of-text id {end_of_text} is outside the vocabulary of {size}")
    return np.array([-1, -1, end_of_text, end_of_text, *(i for i in range(size) if i != end_of_text)], "int64")


class Gpt2Tokenizer(Tokenizer):
    """A GPT-2 checkpoint's byte-level BPE (`vocab.json`, `merges.txt`), with this project's reserved ids.

    keras-hub's `BytePairTokenizer` splits and merges as transformers'
    `GPT2Tokenizer` does (`<|endoftext|>` in the text is that one token);
    its ids are mapped onto this project's by `gpt2_order`. Lossless: every
    byte has a piece, so no text is unknown; except that TensorFlow's regex
    split ends a text at a NUL character (U+0000), which transformers
    encodes. Not trained here: read with a checkpoint
    (`keras_transformer.pretrained.import_gpt2`).

    Args:
        vocabulary: `{piece: GPT-2 id}` (`vocab.json`), ids `0..V-1`.
        merges: the merge rules, `"a b"` strings in rank order (`merges.txt`
            without its `#version` line).
    """

    kind = "gpt2"

    def __init__(self, vocabulary, merges):
        if GPT2_END_OF_TEXT not in vocabulary:
            raise ValueError(f"A GPT-2 vocabulary holds {GPT2_END_OF_TEXT!r}")
        if sorted(vocabulary.values()) != list(range(len(vocabulary))):
            raise ValueError("A GPT-2 vocabulary gives its pieces the ids 0..V-1, each once")
        self.vocabulary, self.merges = dict(vocabulary), list(merges)
        self.order = gpt2_order(len(vocabulary), vocabulary[GPT2_END_OF_TEXT])
        ours = np.empty(len(vocabulary), "int32")
        ours[self.order[END_ID + 1 :]] = np.arange(END_ID + 1, len(self.order))
        ours[vocabulary[GPT2_END_OF_TEXT]] = END_ID
        self._to_ours = tf.constant(ours)
        self._to_gpt2 = tf.constant(np.maximum(self.order, 0).astype("int32"))
        self._pieces = {index: piece for piece, index in vocabulary.items()}
        self.tokenizer = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=self.vocabulary, merges=self.merges, unsplittable_tokens=[GPT2_END_OF_TEXT], dtype="int32",
            _allow_python_workflow=False,  # TensorFlow ops eagerly too: the same path as in tf.data and exports
        )
        self.tokenizer._maybe_initialized_tf()  # its lookup tables made now, not inside a traced function

    def resources(self):
        """The lookup tables tokenizing reads: a `tf.Module` saving a function that tokenizes must track them."""
        tokenizer = self.tokenizer
        return [tokenizer.byte2unicode, tokenizer.unicode2byte, tokenizer.cache.id2value, tokenizer.token_to_id_map,
                tokenizer.id_to_token_map, tokenizer.merge_ranks]  # fmt: skip

    @property
    def vocabulary_size(self):
        return len(self.order)

    @classmethod
    def train_files(cls, paths, vocabulary_size, count=None):
        raise ValueError("A GPT-2 tokenizer comes with its checkpoint (kt-import); train a `sentencepiece` one instead")

    def tokenize(self, text):
        with _tensors_out():
            ids = self.tokenizer.tokenize(tf.convert_to_tensor(text))  # ragged (B, None) GPT-2 ids
        return tf.ragged.map_flat_values(tf.gather, self._to_ours, tf.cast(ids, tf.int32))

    def detokenize(self, token_ids):
        ids = _strip_special(token_ids)
        with _tensors_out():
            return self.tokenizer.detokenize(tf.ragged.map_flat_values(tf.gather, self._to_gpt2, ids))

    def id_to_token(self, token_id):
        token_id = int(token_id)
        if token_id <= UNKNOWN_ID:
            return RESERVED_TOKENS[token_id]
        return self._pieces[int(self.order[token_id])]

    def _identity(self):
        return json.dumps([sorted(self.vocabulary.items(), key=lambda item: item[1]), self.merges]).encode("utf-8")

    def save(self, directory, name):
        files = {"vocabulary": f"{name}.gpt2.json", "file": f"{name}.gpt2.merges.txt"}
        with open(os.path.join(directory, files["vocabulary"]), "w", encoding="utf-8") as f:
            json.dump(self.vocabulary, f, ensure_ascii=False)
        with open(os.path.join(directory, files["file"]), "w", encoding="utf-8") as f:
            f.write("\n".join(self.merges) + "\n")
        return {"kind": self.kind, **files}

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["vocabulary"]), encoding="utf-8") as f:
            vocabulary = json.load(f)
        with open(os.path.join(directory, metadata["file"]), encoding="utf-8") as f:
            merges = f.read().split("\n")[:-1]
        return cls(vocabulary, merges)


TOKENIZERS = {
    cls.kind: cls for cls in (SentencePieceTokenizer, WordPieceTokenizer, MarianTokenizer, BertTokenizer, Gpt2Tokenizer)
}
METADATA_FILE = "tokenizers.json"


def train_tokenizer(kind, lines, vocabulary_size):
    """Train a tokenizer of `kind` ("sentencepiece" or "wordpiece") on `lines`."""
    if kind not in TOKENIZERS:
        raise ValueError(f"Unknown tokenizer. Expected one of {sorted(TOKENIZERS)}. Received: {kind!r}")
    return TOKENIZERS[kind].train(lines, vocabulary_size)


def sample_lines(lines, size, seed=0):
    """`(sample, count)`: at most `size` of `lines`, each line equally likely, and how many there were.

    `lines` is any iterable, read once (a list, or a file streamed line by
    line), so a corpus larger than memory is sampled in `size` lines of
    memory: reservoir sampling (Vitter's algorithm R), seeded. When there
    are no more than `size` lines, the sample is all of them, in order.
    """
    check_positive_int(size, "tokenizer_sample")
    rng = random.Random(seed)
    sample, count = [], 0
    for count, line in enumerate(lines, start=1):
        if count <= size:
            sample.append(line)
        else:
            slot = rng.randrange(count)
            if slot < size:
                sample[slot] = line
    return sample, count


def save_tokenizers(directory, source, target):
    """Save a source and a target tokenizer (the same object when joint)."""
    os.makedirs(directory, exist_ok=True)
    metadata = {"source": source.save(directory, "source")}
    metadata["target"] = metadata["source"] if target is source else target.save(directory, "target")
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)


class TokenizerFileError(ValueError):
    """A tokenizer file a run names is outside its directory, or is not a tokenizer model."""


def _inside(directory, name):
    """`name` (from tokenizers.json) must be a file of `directory` itself: no path, no link out of it."""
    if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
        raise TokenizerFileError(f"{METADATA_FILE} names {name!r}, which is not a file of the run's tokenizers; "
                                 "nothing outside the run is read")  # fmt: skip
    path = os.path.join(directory, name)
    if os.path.realpath(path) != os.path.join(os.path.realpath(directory), name):
        raise TokenizerFileError(f"{name} links outside the run's tokenizers; nothing outside the run is read")


def _checked(cls, directory, entry):
    """The tokenizer `entry` describes, loaded and made to tokenize a word: a corrupt file fails here, named."""
    try:
        tokenizer = cls.load(directory, entry)
        tokenizer.tokenize(tf.constant(["a"]))
    except (tf.errors.OpError, UnicodeDecodeError):
        raise TokenizerFileError(f"{entry['file']} is not a valid {cls.kind} model (corrupt or truncated?)") from None
    return tokenizer


def load_tokenizers(directory):
    """`(source, target)` tokenizers saved by `save_tokenizers`."""
    path = os.path.join(directory, METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
        loaded = {}
        for side in ("source", "target"):
            entry = metadata[side]
            key = json.dumps(entry, sort_keys=True)
            if key not in loaded:
                for name in ("file", "vocabulary"):
                    if name in entry or name == "file":
                        _inside(directory, entry[name])
                loaded[key] = _checked(TOKENIZERS[entry["kind"]], directory, entry)
        return tuple(loaded[json.dumps(metadata[side], sort_keys=True)] for side in ("source", "target"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"Tokenizer files missing in {directory}: {error.filename}") from None
    except TokenizerFileError as error:
        raise ValueError(f"{directory}: {error}") from None
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path} is corrupt or from another version: {error}") from None
