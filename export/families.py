"""Export of classifiers, taggers and language models (SavedModel and TFLite).

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
"""

import numpy as np
import tensorflow as tf

from export.graphs import TranslationModule
from export.registry import register_family
from keras_transformer.decoding.language_model import lm_greedy_search
from keras_transformer.layers.masks import END_ID, PAD_ID, START_ID, UNKNOWN_ID

EXPORTED_FAMILIES = {"classify": "TransformerClassifier", "tag": "TransformerTagger", "lm": "TransformerLM"}
FAMILY_FORMATS = ("saved_model", "tflite", "tflite_float16", "tflite_dynamic_int8")
SIGNATURES = {"classify": ("classify",), "tag": ("tag",), "lm": ("generate", "logits")}
TEXT_SIGNATURES = {"classify": "classify_text", "tag": "tag_text", "lm": "generate_text"}


class FamilyModule(tf.Module):
    """A trained classifier, tagger or language model as exportable functions.

    Args:
        run: an `export.Run` of a classify, tag or lm run.
        fixed_length: declare ids of exactly `max_sequence_length` (TFLite).
        freeze: read weights as graph constants (TFLite, see
            `export.graphs.TranslationModule`).
        text: add the text-in signature (SavedModel).
    """

    _weights = TranslationModule._weights

    def __init__(self, run, fixed_length=False, freeze=False, text=False):
        super().__init__()
        self.model, self.family, self.labels = run.model, run.family, run.labels
        self.tokenizer = run.source_tokenizer
        self.max_length = getattr(self.model, "backbone", self.model).max_sequence_length
        self._frozen = [v.numpy() for v in self.model.variables] if freeze else None
        ids = tf.TensorSpec([None, self.max_length if fixed_length else None], tf.int32, name="token_ids")
        functions = {
            "classify": {"classify": self._classify, "classify_text": self._classify_text},
            "tag": {"tag": self._tag, "tag_text": self._tag_text},
            "lm": {"generate": self._generate, "logits": self._logits, "generate_text": self._generate_text},
        }[self.family]
        for name, function in functions.items():
            if name.endswith("_text"):
                if text:
                    setattr(self, name, tf.function(function, input_signature=[tf.TensorSpec([None], tf.string)]))
                continue
            spec = tf.TensorSpec(ids.shape, tf.int32, name="prompt_ids" if name == "generate" else "token_ids")
            setattr(self, name, tf.function(function, input_signature=[spec]))

    def _fit(self, token_ids):
        """Pad ids to exactly `max_length` positions; longer ones are an error."""
        check = tf.debugging.assert_less_equal(
            tf.shape(token_ids)[1], self.max_length,
            message=f"token sequences must be at most max_sequence_length={self.max_length} long",
        )  # fmt: skip
        with tf.control_dependencies([check]):
            token_ids = tf.pad(token_ids, [[0, 0], [0, self.max_length - tf.shape(token_ids)[1]]])
        return tf.ensure_shape(token_ids, [None, self.max_length])

    def _classify(self, token_ids):
        with self._weights():
            return {"probabilities": tf.nn.softmax(self.model(token_ids, training=False))}

    def _tag(self, token_ids):
        with self._weights():
            probabilities = tf.nn.softmax(self.model(token_ids, training=False))
        tag_ids = tf.cast(tf.argmax(probabilities[:, :, 1:], axis=-1), tf.int32) + 1  # never the padding tag
        tag_ids = tf.where(tf.equal(token_ids, PAD_ID), 0, tag_ids)
        return {"tag_ids": tag_ids, "probabilities": probabilities}

    def _generate(self, prompt_ids):
        prompt_ids = self._fit(prompt_ids)
        with self._weights():
            return {"token_ids": lm_greedy_search(self.model, prompt_ids, self.max_length)}

    def _logits(self, token_ids):
        with self._weights():
            return {"logits": self.model(token_ids, training=False)}

    def _wrap(self, token_ids):
        """Ragged `(B, n)` ids as `[start] ids [end]`, 0-padded to `max_length`."""
        token_ids = tf.cast(token_ids[:, : self.max_length - 2], tf.int32)
        start = tf.fill(tf.stack([token_ids.nrows(), 1]), START_ID)
        ids = tf.concat([start, token_ids.to_tensor(PAD_ID)], axis=1)
        ids = self._fit(tf.pad(ids, [[0, 0], [0, 1]]))  # room for the end token
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


def export_saved_model(run, path, **unused):
    module = FamilyModule(run, text=True)
    names = SIGNATURES[run.family] + (TEXT_SIGNATURES[run.family],)
    signatures = {name: getattr(module, name).get_concrete_function() for name in names}
    signatures["serving_default"] = signatures[SIGNATURES[run.family][0]]
    tf.saved_model.save(module, path, signatures=signatures)


def _export_tflite(variant):
    def export(run, path, **unused):
        from export.tflite import convert, refuse_flex

        module = FamilyModule(run, fixed_length=True, freeze=True)
        flatbuffer = convert(module, variant, signatures=SIGNATURES[run.family])
        refuse_flex(flatbuffer, variant)
        with open(path, "wb") as f:
            f.write(flatbuffer)

    return export


register_family("saved_model", export_saved_model)
for _variant in FAMILY_FORMATS[1:]:
    register_family(_variant, _export_tflite(_variant))


def example_inputs(run, count=32, seed=0):
    """`(count, L)` int32 ids for parity checks, shaped as the run's model reads them.

    Encoder runs: `[start] random tokens [end]` of random lengths; language
    models: prompts of 0 to 4 random tokens.
    """
    rng = np.random.default_rng(seed)
    length = getattr(run.model, "backbone", run.model).max_sequence_length
    vocabulary = run.source_tokenizer.vocabulary_size
    ids = np.zeros((count, length), "int32")
    for row in range(count):
        if run.family == "lm":
            n = int(rng.integers(0, 5))
            ids[row, :n] = rng.integers(4, vocabulary, size=n)
        else:
            n = int(rng.integers(1, length - 1))
            ids[row, : n + 2] = [START_ID, *rng.integers(4, vocabulary, size=n), END_ID]
    return ids


def _reference(run, ids):
    """What the Keras model gives for `ids`: probabilities, tag ids or generated ids."""
    import keras

    if run.family == "classify":
        return keras.ops.convert_to_numpy(keras.ops.softmax(run.model(ids)))
    if run.family == "tag":
        logits = keras.ops.convert_to_numpy(run.model(ids))
        return np.where(ids == PAD_ID, 0, logits[:, :, 1:].argmax(-1) + 1)
    return keras.ops.convert_to_numpy(run.model.generate(ids, max_length=ids.shape[1]))


def _agreement(family, reference, outputs, ids):
    if family == "classify":
        return float(np.mean(outputs.argmax(-1) == reference.argmax(-1))), float(np.abs(outputs - reference).max())
    if family == "tag":
        real = ids != PAD_ID
        return float(np.mean(outputs[real] == reference[real])), None
    return float(np.mean(outputs == reference)), None


def verify(run, export_dir, count=64, threads=2, timed_calls=20):
    """Each exported artifact of a classify/tag/lm run against the Keras model.

    Returns rows: artifact, `size_mb`, agreement (classes, tags at real
    positions, or generated tokens equal to Keras's), the largest probability
    difference (classifiers), and the median ms of a batch-1 call.
    """
    import os
    import time

    from export.registry import artifact_size
    from export.tflite import VARIANTS, interpreter

    ids = example_inputs(run, count)
    signature, output = {"classify": ("classify", "probabilities"), "tag": ("tag", "tag_ids"),
                         "lm": ("generate", "token_ids")}[run.family]  # fmt: skip
    argument = "prompt_ids" if run.family == "lm" else "token_ids"
    reference = _reference(run, ids)
    callers = {}
    saved_model = os.path.join(export_dir, "saved_model")
    if os.path.isdir(saved_model):
        function = tf.saved_model.load(saved_model).signatures[signature]
        callers["saved_model"] = (saved_model, lambda x: function(**{argument: tf.constant(x)})[output].numpy())
    for variant in FAMILY_FORMATS[1:]:
        path = os.path.join(export_dir, VARIANTS[variant])
        if os.path.isfile(path):
            runner = interpreter(path, num_threads=threads).get_signature_runner(signature)
            callers[variant] = (path, lambda x, runner=runner: runner(**{argument: x})[output])
    rows = [{"artifact": "keras", "size_mb": None, "agreement": 1.0, "max_probability_difference": 0.0}]
    for name, (path, call) in callers.items():
        agreement, difference = _agreement(run.family, reference, call(ids), ids)
        times = []
        for row in range(min(timed_calls, count)):
            start = time.perf_counter()
            call(ids[row : row + 1])
            times.append(1000 * (time.perf_counter() - start))
        rows.append({"artifact": name, "size_mb": round(artifact_size(path) / 1e6, 3), "agreement": agreement,
                     "max_probability_difference": difference, "ms_batch_1": round(float(np.median(times)), 3)})  # fmt: skip
    return rows
