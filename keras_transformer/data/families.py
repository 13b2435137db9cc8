"""Training data of the encoder-only and decoder-only models, from text.

Every encoder input is `[start] tokens [end]`, 0-padded (the start token is
the classifier's `[CLS]`-style first position); tag labels are 0 at the
start, end and padding positions. Language-model inputs are `[start] tokens`
with labels `tokens [end]`. Longer texts are truncated to `max_length`
positions. File readers: `text<TAB>label` lines, CoNLL-style `token<TAB>tag`
blocks, plain text.
"""

import collections

import numpy as np
import tensorflow as tf

from keras_transformer.data.readers import ReadReport, _decode, _read_lines, read_tsv
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS, START_ID


def _pad(rows, length):
    array = np.full((len(rows), length), PAD_ID, "int32")
    for i, row in enumerate(rows):
        array[i, : len(row)] = row
    return array


def _check_max_length(max_length, least):
    if max_length < least:
        raise ValueError(f"`max_length` must be at least {least}. Received: max_length={max_length}")


def tokenize(tokenizer, texts):
    """Token id lists of `texts` (lists of Python ints, no start or end token)."""
    if not len(texts):
        return []
    return [list(row) for row in tokenizer.tokenize(tf.constant(list(texts))).to_list()]


def encoder_inputs(tokenizer, texts, max_length):
    """`(N, L)` int32 ids `[start] tokens [end]`, `L` the longest row (at most `max_length`)."""
    _check_max_length(max_length, 3)
    rows = [[START_ID, *ids[: max_length - 2], END_ID] for ids in tokenize(tokenizer, texts)]
    return _pad(rows, max(map(len, rows), default=2))


def label_ids(labels, label_names, what="label"):
    """Labels as ids into `label_names`; an unknown label is an error naming it."""
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"Unknown {what}(s) {unknown[:10]}: not among the training set's {label_names[:20]}.")
    return np.array([index[label] for label in labels], "int32")


def classification_data(tokenizer, texts, labels, label_names, max_length):
    """`(token_ids (N, L), label ids (N,))` for `TransformerClassifier`."""
    return encoder_inputs(tokenizer, texts, max_length), label_ids(labels, label_names)


def word_ids(tokenizer, sentences):
    """One id per word of each sentence (lists of words): the word's first subword, `[UNK]` if none."""
    words = [word for sentence in sentences for word in sentence]
    pieces = tokenize(tokenizer, words)
    ids = iter([row[0] if row else 1 for row in pieces])
    return [[next(ids) for _ in sentence] for sentence in sentences]


def tagging_data(tokenizer, sentences, tags, tag_names, max_length):
    """`(token_ids (N, L), tag ids (N, L))` for `TransformerTagger`; tag 0 at start, end, padding.

    Each word is one position (its first subword), so tags stay aligned with
    words; words beyond `max_length - 2` are cut.
    """
    _check_max_length(max_length, 3)
    keep = max_length - 2
    inputs = [[START_ID, *ids[:keep], END_ID] for ids in word_ids(tokenizer, sentences)]
    labels = [[PAD_ID, *label_ids(row[:keep], tag_names, "tag"), PAD_ID] for row in tags]
    length = max(map(len, inputs), default=2)
    return _pad(inputs, length), _pad(labels, length)


def language_model_data(tokenizer, texts, max_length):
    """`(inputs (N, L), labels (N, L))`: `[start] tokens` and `tokens [end]`, for `TransformerLM`."""
    _check_max_length(max_length, 2)
    rows = [ids[: max_length - 1] for ids in tokenize(tokenizer, texts)]
    inputs = [[START_ID, *ids] for ids in rows]
    labels = [[*ids, END_ID] for ids in rows]
    length = max(map(len, inputs), default=1)
    return _pad(inputs, length), _pad(labels, length)


def masked_lm_dataset(token_ids, mask_token_id, vocabulary_size, batch_size, selection_rate=0.15, seed=0,
                      shuffle=True):  # fmt: skip
    """BERT's masked-LM batches over `(N, L)` encoder inputs, masked anew each epoch.

    keras-hub's `MaskedLMMaskGenerator` picks `selection_rate` of the real
    tokens (never padding, start or end) and replaces 80% of them with
    `mask_token_id`, 10% with a random token, and keeps 10%.

    Returns:
        A `tf.data.Dataset` of `({"token_ids", "mask_positions"}, labels)`,
        labels the original ids at the selected positions, 0 where a row has
        fewer selections (ignored by the loss).
    """
    import keras_hub

    length = token_ids.shape[1]
    masker = keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=vocabulary_size,
        mask_selection_rate=selection_rate,
        mask_token_id=mask_token_id,
        mask_selection_length=max(1, int(np.ceil(selection_rate * length * 1.5))),
        unselectable_token_ids=[PAD_ID, START_ID, END_ID],
    )

    def mask(ids):
        outputs = masker(tf.RaggedTensor.from_tensor(ids, padding=PAD_ID))
        masked = outputs["token_ids"].to_tensor(PAD_ID, shape=[None, length])
        labels = tf.where(outputs["mask_weights"] > 0, outputs["mask_ids"], PAD_ID)
        return {"token_ids": masked, "mask_positions": outputs["mask_positions"]}, labels

    dataset = tf.data.Dataset.from_tensor_slices(token_ids)
    if shuffle:
        dataset = dataset.shuffle(len(token_ids), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_labelled(path, max_line_chars=1000):
    """`text<TAB>label` lines: `(texts, labels, report)`; raises if none is usable."""
    texts, labels, report = read_tsv(path, max_line_chars)
    if not texts:
        raise ValueError(f"No usable `text<TAB>label` line: {report.summary()}")
    return texts, [label.strip() for label in labels], report


def read_conll(path, max_words=1000):
    """CoNLL-style tagged sentences: one `token<TAB>tag` line per word (the first
    column is the token, the last the tag), a blank line between sentences,
    `#` comment lines ignored. Returns `(sentences, tags, report)`."""
    lines = _read_lines(path)
    report = ReadReport(path, lines=len(lines), unit="sentences")
    sentences, tags, words, word_tags, bad = [], [], [], [], False

    def flush():
        nonlocal words, word_tags, bad
        if words and not bad and len(words) <= max_words:
            sentences.append(words)
            tags.append(word_tags)
            report.kept += 1
        words, word_tags, bad = [], [], False

    for number, raw in enumerate(lines, start=1):
        line = _decode(raw)
        if line is None or "\x00" in line:
            report.skip("not UTF-8" if line is None else "NUL bytes", number)
            bad = True
            continue
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) < 2 or not columns[0].strip() or not columns[-1].strip():
            report.skip("not token<TAB>tag", number)
            bad = True
            continue
        words.append(columns[0].strip())
        word_tags.append(columns[-1].strip())
    flush()
    if not sentences:
        raise ValueError(f"No usable tagged sentence: {report.summary()}")
    return sentences, tags, report


def word_vocabulary(sentences, size):
    """The reserved tokens and the `size - 4` most frequent words (ties by first use)."""
    counts = collections.Counter(word for sentence in sentences for word in sentence)
    words = [word for word, _ in counts.most_common() if word not in RESERVED_TOKENS and "##" not in word]
    return list(RESERVED_TOKENS) + words[: max(0, size - len(RESERVED_TOKENS))]


def label_vocabulary(labels, reserved=()):
    """Sorted distinct labels after `reserved` (the tagger's padding tag first)."""
    return list(reserved) + sorted(set(labels) - set(reserved))
