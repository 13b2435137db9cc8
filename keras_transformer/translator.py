"""Text in, text out: tokenizers + model + greedy or beam decoding."""

import sys

import tensorflow as tf

from keras_transformer.run_directory import RunDirectory
from keras_transformer.vocabulary import PAD_ID


class Translator:
    """Translate sentences with a trained model and its tokenizers.

    Empty (or whitespace-only) inputs translate to empty strings without
    running the model. Inputs longer than the model's `max_sequence_length`
    tokens are truncated to it; `truncated` counts them.

    Args:
        model: a trained `keras_transformer.Transformer`.
        source_tokenizer, target_tokenizer: its tokenizers.
        max_length: most target tokens; defaults to `max_sequence_length`.
        beam_size: 1 for greedy search, more for beam search.
        length_penalty: GNMT's alpha for beam search.
    """

    def __init__(self, model, source_tokenizer, target_tokenizer, max_length=None, beam_size=1, length_penalty=0.6):
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"`beam_size` must be a positive integer. Received: beam_size={beam_size}")
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_length = model.max_sequence_length if max_length is None else max_length
        if not isinstance(self.max_length, int) or not 1 <= self.max_length <= model.max_sequence_length:
            raise ValueError(
                f"`max_length` must be in [1, {model.max_sequence_length}] (the model's max_sequence_length). "
                f"Received: max_length={max_length}"
            )
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.truncated = 0

    def _generate(self, source_ids):
        if self.beam_size == 1:
            return self.model.generate(source_ids, max_length=self.max_length)
        beams, _ = self.model.generate(
            source_ids,
            max_length=self.max_length,
            method="beam",
            beam_size=self.beam_size,
            length_penalty=self.length_penalty,
        )
        return beams[:, 0]

    @classmethod
    def from_run_directory(cls, path, **kwargs):
        """The translator of a translation run's `model.keras` and tokenizers (checked by `RunDirectory.load`)."""
        run = RunDirectory(path).load()
        if run.family != "translate":
            raise ValueError(f"{path} holds a {run.family} run, not a translation model.")
        return cls(run.model, run.source_tokenizer, run.target_tokenizer, **kwargs)

    def translate(self, texts, batch_size=64):
        """Translations of `texts` (a list of strings), in order."""
        texts = list(texts)
        outputs = [""] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return outputs
        limit = self.model.max_sequence_length
        translations = []
        for start in range(0, len(todo), batch_size):
            batch = tf.constant([texts[i] for i in todo[start : start + batch_size]])
            source_ids = self.source_tokenizer.tokenize(batch)  # ragged (B, None)
            self.truncated += int(tf.reduce_sum(tf.cast(source_ids.row_lengths() > limit, tf.int32)))
            generated = self._generate(source_ids[:, :limit].to_tensor(PAD_ID))
            translations.extend(t.decode("utf-8") for t in self.target_tokenizer.detokenize(generated).numpy())
        for i, translation in zip(todo, translations):
            outputs[i] = translation
        return outputs


def warn_truncated(translator):
    if translator.truncated:
        print(
            f"warning: {translator.truncated} input(s) longer than {translator.model.max_sequence_length} "
            "tokens were truncated.",
            file=sys.stderr,
        )
