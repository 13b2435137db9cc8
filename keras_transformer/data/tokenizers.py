"""Subword tokenizers trained on the user's corpus, built on keras-hub.

Both kinds use the project's reserved ids: 0 pad, 1 unknown, 2 start, 3 end.

- `SentencePieceTokenizer` (keras-hub `compute_sentence_piece_proto` and
  tensorflow-text's `SentencepieceTokenizer`, unigram by default): lossless up to NFKC
  normalisation (e.g. full-width forms become ASCII) and runs of whitespace
  becoming one space.
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
import tensorflow as tf
import tensorflow_text as tf_text

from keras_transformer.checks import check_positive_int
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS

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

    def __init__(self, proto):
        self.proto = proto
        self.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)

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
        return self._run("tokenize", text)

    def id_to_token(self, token_id):
        if token_id < len(RESERVED_TOKENS):
            return RESERVED_TOKENS[token_id]
        return self._run("id_to_string", tf.constant(int(token_id), tf.int32)).numpy().decode("utf-8")

    def detokenize(self, token_ids):
        return self._run("detokenize", _strip_special(token_ids))

    def _identity(self):
        return self.proto

    def save(self, directory, name):
        filename = f"{name}.spm"
        with open(os.path.join(directory, filename), "wb") as f:
            f.write(self.proto)
        return {"kind": self.kind, "file": filename}

    @classmethod
    def load(cls, directory, metadata):
        with open(os.path.join(directory, metadata["file"]), "rb") as f:
            return cls(f.read())


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


TOKENIZERS = {cls.kind: cls for cls in (SentencePieceTokenizer, WordPieceTokenizer)}
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
                _inside(directory, entry["file"])
                loaded[key] = _checked(TOKENIZERS[entry["kind"]], directory, entry)
        return tuple(loaded[json.dumps(metadata[side], sort_keys=True)] for side in ("source", "target"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"Tokenizer files missing in {directory}: {error.filename}") from None
    except TokenizerFileError as error:
        raise ValueError(f"{directory}: {error}") from None
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path} is corrupt or from another version: {error}") from None
