"""Uniform callers of each artifact for `export.verify`: the Keras model, SavedModel, TFLite, text TFLite.

Each has `generate(ids)` and `teacher_forced_logits(ids, decoder_ids)` (text
variants: `translate(sentences)`), a `name` and, for files, a `path`.
"""

import numpy as np


class KerasBackend:
    name = "keras"

    def __init__(self, model):
        self.model = model

    def generate(self, ids):
        return np.asarray(self.model.generate(ids))

    def teacher_forced_logits(self, ids, decoder_ids):
        return np.asarray(self.model({"encoder_token_ids": ids, "decoder_token_ids": decoder_ids}))


class SavedModelBackend:
    name = "saved_model"

    def __init__(self, path):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the tokenizer ops)

        self.tf = tf
        self.loaded = tf.saved_model.load(path)
        self.path = path

    def generate(self, ids):
        return self.loaded.signatures["generate"](encoder_token_ids=self.tf.constant(ids))["token_ids"].numpy()

    def teacher_forced_logits(self, ids, decoder_ids):
        outputs = self.loaded.signatures["logits"](
            encoder_token_ids=self.tf.constant(ids), decoder_token_ids=self.tf.constant(decoder_ids)
        )
        return outputs["logits"].numpy()


class TFLiteBackend:
    def __init__(self, path, name, num_threads=2):
        from .interpreter import interpreter

        self.name, self.path = name, path
        self.interpreter = interpreter(path, num_threads=num_threads)
        self.runners = {}

    def _runner(self, name):
        if name not in self.runners:
            self.runners[name] = self.interpreter.get_signature_runner(name)
        return self.runners[name]

    def generate(self, ids):
        return self._runner("generate")(encoder_token_ids=ids)["token_ids"]

    def teacher_forced_logits(self, ids, decoder_ids):
        caches = self._runner("encode")(encoder_token_ids=ids)
        self_cache, cross_cache = caches["self_attention_cache"], caches["cross_attention_cache"]
        step = self._runner("decode_step")
        logits = []
        for index in range(decoder_ids.shape[1]):
            out = step(
                token_ids=decoder_ids[:, index : index + 1],
                index=np.array(index, "int32"),
                self_attention_cache=self_cache,
                cross_attention_cache=cross_cache,
                encoder_token_ids=ids,
            )
            self_cache = out["self_attention_cache"]
            logits.append(out["logits"])
        return np.stack(logits, 1)


class TFLiteTextBackend:
    """A text-in/text-out variant (`export.tflite_text`): compared on text."""

    def __init__(self, path, name, num_threads=2):
        from .interpreter import interpreter

        self.name, self.path = name, path
        self.runner = interpreter(path, num_threads=num_threads).get_signature_runner("translate")

    def translate(self, sentences):
        text = np.array([sentence.encode("utf-8") for sentence in sentences], dtype=object)
        return [t.decode("utf-8") for t in self.runner(text=text)["translation"]]
