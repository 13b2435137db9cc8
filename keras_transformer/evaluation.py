"""Corpus BLEU and chrF with sacreBLEU, and a callback that logs them each epoch."""

import os
import time

import keras
import sacrebleu


def corpus_scores(hypotheses, references):
    """sacreBLEU's corpus BLEU and chrF of detokenized text.

    Returns:
        dict with `bleu` (cased, sacreBLEU's default), `bleu_lowercase`,
        `chrf` and sacreBLEU's `bleu_signature` (of the cased score).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references.")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    return {
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "bleu_lowercase": sacrebleu.metrics.BLEU(lowercase=True).corpus_score(hypotheses, [references]).score,
        "chrf": chrf.corpus_score(hypotheses, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
    }


NOT_LEARNED_BLEU = 1.0  # below it, the validation translations share almost nothing with the references


def not_learned_hint(epoch, hypotheses):
    """What a BLEU near 0 after `epoch` (from 0) means, and what usually helps."""
    empty = sum(not text.strip() for text in hypotheses)
    distinct = len(set(hypotheses))
    symptoms = []
    if empty:
        symptoms.append(f"{empty} of {len(hypotheses)} translations are empty")
    if distinct <= max(1, len(hypotheses) // 10):
        symptoms.append(f"only {distinct} different translation(s)")
    seen = f" ({'; '.join(symptoms)})" if symptoms else ""
    return (
        f"Hint: BLEU near 0 after epoch {epoch + 1} means the model has not learned to translate yet{seen}. "
        "The first epochs of the warm-up often look like this. If it lasts: train longer (--epochs, --time-limit); "
        "check that line N of --train-src translates line N of --train-tgt; give it more sentence pairs, or a "
        "smaller model (--preset tiny) and vocabulary (--vocab-size) for a small corpus; lower "
        "--learning-rate-scale if the training loss stopped falling or rose."
    )


class BleuCallback(keras.callbacks.Callback):
    """Decode the validation sources after each epoch and log `val_bleu`, `val_chrf`.

    Put it before `ModelCheckpoint` and `CSVLogger` so they see the scores.

    Args:
        translator: a `keras_transformer.translator.Translator` on the model
            being trained.
        sources, references: validation sentences.
        batch_size: sentences decoded at once.
        progress: show progress on stderr while decoding (a redrawn line on
            a terminal, a line every 30 s of a long decoding elsewhere).
    """

    def __init__(self, translator, sources, references, batch_size=64, progress=False):
        super().__init__()
        self.progress = progress
        self.translator = translator
        self.sources = list(sources)
        self.references = list(references)
        self.batch_size = batch_size
        self.hinted = False  # the hint for a model that has not learned yet is printed once

    def on_epoch_end(self, epoch, logs=None):
        start = time.time()
        from keras_transformer.translator import terminal_progress

        progress = terminal_progress(label=f"epoch {epoch + 1} validation:") if self.progress else None
        hypotheses = self.translator.translate(self.sources, self.batch_size, progress=progress)
        scores = corpus_scores(hypotheses, self.references)
        if logs is not None:
            logs["val_bleu"] = scores["bleu"]
            logs["val_chrf"] = scores["chrf"]
        print(
            f"Epoch {epoch + 1}: validation BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} "
            f"(greedy, {len(hypotheses)} sentences, {time.time() - start:.0f} s)"
        )
        if scores["bleu"] < NOT_LEARNED_BLEU and not self.hinted:
            self.hinted = True
            print(not_learned_hint(epoch, hypotheses))


class AttentionImages(keras.callbacks.Callback):
    """Write the cross-attention of a few fixed sentences to TensorBoard after each epoch.

    One image per sentence, `attention/sentence_<i>`: the last decoder
    layer's cross-attention, a panel per head, pieces as tick labels
    (`keras_transformer.visualization.attention_figure`).

    Args:
        translator: a `Translator` on the model being trained.
        sentences: the source sentences (a few; each costs a decoding and a drawing).
        log_dir: TensorBoard's log directory (the images go to `log_dir/attention`).
    """

    def __init__(self, translator, sentences, log_dir):
        super().__init__()
        self.translator = translator
        self.sentences = [sentence for sentence in sentences if sentence.strip()]
        self.log_dir = log_dir
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from keras_transformer.visualization import attention_figure, figure_png

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "attention"))
        last = [self.translator.model.num_layers - 1]
        with self.writer.as_default():
            for i, sentence in enumerate(self.sentences):
                figure, translation = attention_figure(self.translator, sentence, layers=last)
                image = tf.image.decode_png(figure_png(figure, dpi=60), channels=3)
                tf.summary.image(f"attention/sentence_{i + 1}", image[None], step=epoch,
                                 description=f"{sentence} -> {translation}")  # fmt: skip
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
