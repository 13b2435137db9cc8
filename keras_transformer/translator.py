"""Text in, text out: tokenizers + model + greedy or beam decoding."""

import sys
import time

import numpy as np
import tensorflow as tf

from keras_transformer.checks import check_bool, check_finite
from keras_transformer.data.tokenizers import appends_end, model_ids
from keras_transformer.decoding.beam import check_length_penalty_form
from keras_transformer.run_directory import RunDirectory

BEAM_SIZE = 4  # the default decoding of the Python API, the translate command and serving_default


class Translator:
    """Translate sentences with a trained model and its tokenizers.

    Beam search (beam 4, length penalty 0.6, as in the paper) by default:
    the setting the README's BLEU is quoted for, and what the translate
    command and the SavedModel's `serving_default` use; `beam_size=1` is
    greedy search. Empty (or whitespace-only) inputs translate to empty
    strings without running the model. Inputs longer than the model's
    `max_sequence_length` tokens are truncated to it; `truncated` counts them.

    Args:
        model: a trained `keras_transformer.Transformer`.
        source_tokenizer, target_tokenizer: its tokenizers.
        max_length: most target tokens; defaults to `max_sequence_length`.
        beam_size: 1 for greedy search, more for beam search.
        length_penalty: GNMT's alpha for beam search.
        length_penalty_form: `"gnmt"` (`((5 + length) / 6) ** alpha`) or
            `"length"` (`length ** alpha`, the form of transformers'
            `length_penalty`); see `keras_transformer.decoding.length_penalty`.
        exact_stop: beam search stops a sentence only once no live beam
            could beat its finished hypotheses at any length up to
            `max_length` (slower; see `keras_transformer.decoding.beam_search`).

    Example (a run trained by `train.py` on English-German):

        translator = keras_transformer.Translator.from_run("runs/multi30k")
        translator.translate(["A man is riding a bike."])  # ["Ein Mann fährt Fahrrad."]
        translator.translate(["A man is riding a bike."], n_best=2)  # [[(text, score), (text, score)]]
        translator.translate(["A man is riding a bike."], beam_size=1)  # greedy
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        max_length=None,
        beam_size=BEAM_SIZE,
        length_penalty=0.6,
        exact_stop=False,
        length_penalty_form="gnmt",
    ):
        _check_beam_size(beam_size)
        check_finite(length_penalty, "length_penalty")
        check_bool(exact_stop, "exact_stop")
        check_length_penalty_form(length_penalty_form)
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
        self.exact_stop = exact_stop
        self.length_penalty_form = length_penalty_form
        self.truncated = 0

    @classmethod
    def from_run(cls, path, **kwargs):
        """The translator of a translation run directory: its `model.keras` and tokenizers.

        The directory is checked first (`RunDirectory.load`): a missing,
        corrupt or mismatched file is a `RunDirectoryError` (a `ValueError`)
        naming it. `kwargs` are the constructor's (`beam_size`, ...).
        """
        run = RunDirectory(path).load()
        if run.family != "translate":
            raise ValueError(f"{path} holds a run of the {run.family} task, not a translation model.")
        return cls(run.model, run.source_tokenizer, run.target_tokenizer, **kwargs)

    def source_ids(self, texts):
        """`(B, S)` int32 source ids of `texts`, 0-padded, truncated to `max_sequence_length` (counted)."""
        return self._padded(self.source_tokenizer.tokenize(tf.constant(list(texts))))

    def _padded(self, pieces):
        """Ragged `(B, None)` pieces as `(B, S)` ids, truncated to `max_sequence_length` (counted)."""
        limit = self.model.max_sequence_length
        self.truncated += int(tf.reduce_sum(tf.cast(pieces.row_lengths() > limit, tf.int32)))
        return model_ids(self.source_tokenizer, pieces, limit)

    def translate(
        self, texts, batch_size=64, beam_size=None, length_penalty=None, n_best=None, progress=None, exact_stop=None
    ):
        """Translations of `texts` (a list of strings), in order; one string for one string.

        Args:
            texts: the sentences: a list (or any iterable) of strings, or one
                string, which is one sentence (its translation is returned
                as a string, not a list). A sentence that is empty or becomes
                no token at all (only whitespace or control characters, say)
                translates to `""` without running the model.
            batch_size: sentences decoded at once.
            beam_size, length_penalty, exact_stop: override the translator's
                for this call.
            n_best: return, for each sentence, the `n_best` best hypotheses
                as `(translation, score)` pairs, best first (scores: length-
                normalised log-probabilities; needs `n_best <= beam_size`).
            progress: called as `progress(done, total)` after each batch
                (sentences translated so far, of the non-empty ones).

        Returns:
            A list of strings, or with `n_best` a list of lists of pairs
            (an empty input gets `[("", 0.0)]`); for one string, that one
            result.
        """
        if isinstance(texts, (str, bytes)):
            return self.translate(
                [texts], batch_size, beam_size, length_penalty, n_best, progress, exact_stop
            )[0]  # fmt: skip
        beam_size = self.beam_size if beam_size is None else beam_size
        length_penalty = self.length_penalty if length_penalty is None else length_penalty
        exact_stop = self.exact_stop if exact_stop is None else exact_stop
        _check_beam_size(beam_size)
        check_finite(length_penalty, "length_penalty")
        check_bool(exact_stop, "exact_stop")
        if n_best is not None and (not isinstance(n_best, int) or not 1 <= n_best <= beam_size):
            raise ValueError(f"`n_best` must be in [1, beam_size={beam_size}]. Received: n_best={n_best}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size}")
        texts = [_as_text(text, i) for i, text in enumerate(texts)]
        outputs = [[("", 0.0)] if n_best else "" for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if todo:  # tokenized once; sentences of no piece at all (control characters, ...) are empty, as "" is
            pieces = self.source_tokenizer.tokenize(tf.constant([texts[i] for i in todo]))  # ragged (N, None)
            keep = np.flatnonzero(pieces.row_lengths().numpy() > int(appends_end(self.source_tokenizer)))
            todo, pieces = [todo[k] for k in keep], tf.gather(pieces, keep)
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            source_ids = self._padded(pieces[start : start + batch_size])
            if beam_size == 1:
                hypotheses = self.model.generate(source_ids, max_length=self.max_length)[:, None]
                scores = np.zeros((len(rows), 1), "float32")
            else:
                hypotheses, scores = self.model.generate(
                    source_ids,
                    max_length=self.max_length,
                    method="beam",
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    length_penalty_form=self.length_penalty_form,
                    exact_stop=exact_stop,
                )
            hypotheses, scores = np.asarray(hypotheses), np.asarray(scores)
            strings = [self.target_tokenizer.detokenize(hypotheses[:, k]).numpy() for k in range(n_best or 1)]
            for j, i in enumerate(rows):
                pairs = [(text[j].decode("utf-8"), float(scores[j, k])) for k, text in enumerate(strings)]
                outputs[i] = pairs if n_best else pairs[0][0]
            if progress is not None:
                progress(min(start + batch_size, len(todo)), len(todo))
        return outputs


def _as_text(text, index):
    """A sentence as `str`: UTF-8 bytes are decoded; anything else is an error naming its position."""
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"`texts[{index}]` is not UTF-8 text. Received: {text[:40]!r}") from None
    if not isinstance(text, str):
        raise ValueError(f"`texts` must hold strings; texts[{index}] is a {type(text).__name__}: {text!r:.60}")
    return text


def _check_beam_size(beam_size):
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"`beam_size` must be a positive integer. Received: beam_size={beam_size}")


PROGRESS_INTERVAL = 30.0  # seconds between progress lines when stderr is a file or a pipe


def terminal_progress(stream=None, label="translated", interval=PROGRESS_INTERVAL, clock=time.monotonic):
    """A `progress(done, total)` for long decoding: never silent for long, never noisy in a log.

    On a terminal it redraws one line on `stream` (stderr) at every call.
    Written to a file or a pipe, it adds a line only once `interval` seconds
    have passed since the last one (or since it was made), and then the last
    line too: a job shorter than `interval` prints nothing.
    """
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():

        def redraw(done, total):
            stream.write(f"\r{label} {done}/{total} sentences" + ("\n" if done == total else ""))
            stream.flush()

        return redraw
    state = {"last": clock(), "printed": False}

    def line(done, total):
        now = clock()
        if now - state["last"] >= interval or (done == total and state["printed"]):
            stream.write(f"{label} {done}/{total} sentences\n")
            stream.flush()
            state.update(last=now, printed=True)

    return line


def warn_truncated(translator):
    if translator.truncated:
        print(
            f"warning: {translator.truncated} input(s) longer than {translator.model.max_sequence_length} "
            "tokens were truncated.",
            file=sys.stderr,
        )
