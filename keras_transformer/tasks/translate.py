"""N-to-M: translation with the encoder-decoder `Transformer`.

Without files, the built-in `SyntheticTranslationTask` (arrays, scored by
teacher-forced cross-entropy and accuracy), with whole-word vocabularies
saved as WordPiece tokenizers so the run translates and exports like a text
run. With parallel text: tokenizers trained on it (or reloaded when
resuming), a bucketed `tf.data` pipeline, validation BLEU and chrF each
epoch, and the best model's validation translations in `hypotheses.txt`.
"""

import dataclasses
import os
import time

import numpy as np

from keras_transformer import losses, metrics
from keras_transformer.checks import check_positive_int
from keras_transformer.models import Transformer
from keras_transformer.models.common import ARCHITECTURE, DROPOUT_RATES
from keras_transformer.optimizers import transformer_adam
from keras_transformer.schedules import TransformerSchedule
from keras_transformer.tasks.base import ARCHITECTURE_OPTIONS, TOKENIZER_SAMPLE, Task, TaskOptions

# The first training sentences saved in calibration.txt: GPTQ rounding of the dynamic-int8 weights reads
# them all (export.gptq), full int8's calibration the first 100.
CALIBRATION_SENTENCES = 3000
INIT_KEYS = ("source_vocabulary_size", "target_vocabulary_size", "tie_embeddings", "share_embeddings",
             "zero_start_embedding")  # fmt: skip


def _translation_run(path, max_length):
    """`(model, (source, target) tokenizers)` of the finished translation run at `path`, checked."""
    from keras_transformer.run_directory import RunDirectory

    loaded = RunDirectory(path).load()
    if loaded.family != "translate":
        raise ValueError(f"`init_from` {path} holds a run of the {loaded.family} task, not a translation model.")
    if max_length > loaded.max_sequence_length:
        raise ValueError(
            f"`max_length` {max_length} is longer than {path}'s max_sequence_length={loaded.max_sequence_length}."
        )
    return loaded.model, (loaded.source_tokenizer, loaded.target_tokenizer)
ATTENTION_SENTENCES = 3  # validation sentences whose cross-attention TensorBoard shows each epoch


@dataclasses.dataclass
class TranslateOptions(TaskOptions):
    """`TaskOptions` and the encoder-decoder's own: embeddings, schedule, parallel text."""

    tie_embeddings: bool = False
    share_embeddings: bool = False
    learning_rate_scale: float = 2.0
    batch_by: str = "sentences"
    joint_vocabulary: bool = False
    train_src: str = None
    train_tgt: str = None
    train_tsv: str = None
    val_src: str = None
    val_tgt: str = None
    val_tsv: str = None
    init_from: str = None
    val_bleu_sentences: int = 1000
    shuffle_buffer: int = 100_000
    steps_per_epoch: int = None
    marian_compatible: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.marian_compatible:  # what `python -m export --format marian` needs to give the same model
            needed = [
                (not self.text, "parallel text (train_src/train_tgt or train_tsv)"),
                (self.subword_tokenizer != "sentencepiece", "SentencePiece tokenizers (not `tokenizer` wordpiece)"),
                (not self.joint_vocabulary, "one vocabulary for both sides (`joint_vocabulary`; CTranslate2 reads one)"),
                (self.position not in (None, "sinusoidal"), "sinusoidal positions (not `position` " f"{self.position})"),
                (self.normalize_first, "post-norm layers (not `normalize_first`)"),
                (self.init_from is not None, "a model of its own (not `init_from`, whose run decides)"),
            ]
            missing = [what for wrong, what in needed if wrong]
            if missing:
                raise ValueError(f"`marian_compatible` needs {'; '.join(missing)}")
        check_positive_int(self.val_bleu_sentences, "val_bleu_sentences")
        check_positive_int(self.shuffle_buffer, "shuffle_buffer")
        check_positive_int(self.steps_per_epoch, "steps_per_epoch", allow_none=True)
        if self.init_from is not None:
            if not self.text:
                raise ValueError("`init_from` continues a translation run on parallel text: give `train_src` and "
                                 "`train_tgt`, or `train_tsv`")  # fmt: skip
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            names = (*ARCHITECTURE_OPTIONS, "normalize_first", "tie_embeddings", "share_embeddings", "joint_vocabulary",
                     "vocab_size")  # fmt: skip
            fixed = [name for name in names if name not in DROPOUT_RATES and getattr(self, name) != defaults[name]]
            if fixed:
                raise ValueError(
                    f"`init_from` takes the architecture and tokenizers of its run; "
                    f"drop {', '.join(f'`{name}`' for name in fixed)} (the dropout rates may change)"
                )
        if self.batch_by not in ("sentences", "tokens"):
            raise ValueError(f'`batch_by` must be "sentences" or "tokens". Received: batch_by={self.batch_by!r}')
        if self.text and not (self.train_tsv or (self.train_src and self.train_tgt)):
            raise ValueError("give both `train_src` and `train_tgt`, or `train_tsv`")
        if self.share_embeddings and not (self.text and self.joint_vocabulary):
            raise ValueError(
                "`share_embeddings` gives source and target one embedding, so they need one vocabulary: "
                "add `joint_vocabulary` (parallel text; the built-in task has two vocabularies)"
            )

    @property
    def text(self):
        """Whether the task reads parallel text (else the built-in synthetic task)."""
        return bool(self.train_src or self.train_tgt or self.train_tsv)


class TranslateTask(Task):
    """The encoder-decoder on the built-in synthetic task or on parallel text."""

    name = "translate"
    family = "translate"
    model_class = Transformer
    options_class = TranslateOptions

    def trains_tokenizer(self):
        return self.options.text and not self.options.init_from

    init_model = None  # with `init_from`: the run's model, whose architecture and weights this one starts from

    def prepare(self, run, resume=False):
        if self.options.text:
            self._prepare_text(run, resume)
        else:
            self._prepare_synthetic(run)
        self.description += f", vocabularies {self.vocabulary_sizes[0]} / {self.vocabulary_sizes[1]}"

    def _prepare_synthetic(self, run):
        from keras_transformer.data.synthetic import SyntheticTranslationTask
        from keras_transformer.data.tokenizers import WordPieceTokenizer

        options = self.options
        task = SyntheticTranslationTask()
        self.train_x, self.train_y = task.dataset(options.train_examples or 20000, seed=options.seed + 1)
        self.val_x, self.val_y = task.dataset(options.val_examples or 1000, seed=options.seed + 2)
        if max(self.train_x["encoder_token_ids"].shape[1], self.train_y.shape[1]) > options.max_length:
            raise ValueError(f"`max_length` {options.max_length} is shorter than the synthetic sentences.")
        run.save_tokenizers(WordPieceTokenizer(task.source_vocabulary), WordPieceTokenizer(task.target_vocabulary))
        sources, _ = task.sample(CALIBRATION_SENTENCES, seed=options.seed + 1)  # the first training sentences
        self.calibration = [task.source_text(ids) for ids in sources]
        self.vocabulary_sizes = (task.source_vocabulary_size, task.target_vocabulary_size)
        self.description = f"synthetic translation, {len(self.train_y)} training / {len(self.val_y)} validation sentences"
        self.config = {"name": "synthetic", "family": self.family, **task.config()}
        self.val_sources = None

    def _prepare_text(self, run, resume):
        from keras_transformer.data.readers import read_parallel

        options = self.options
        if options.init_from:
            self.init_model, tokenizers = _translation_run(options.init_from, options.max_length)
        reused = resume and run.has_tokenizers()
        if reused:
            self.source_tokenizer, self.target_tokenizer = run.load_tokenizers()
        elif self.init_model is not None:
            self.source_tokenizer, self.target_tokenizer = tokenizers
            print(f"Continuing from {options.init_from}: its model and tokenizers")
        train_pairs, reports = self._read_training_text(run, resume, sample=not reused and self.init_model is None)
        self.val_sources = self.val_references = None
        if options.val_src or options.val_tgt or options.val_tsv:
            self.val_sources, self.val_references, val_report = read_parallel(
                options.val_src, options.val_tgt, options.val_tsv, options.max_line_chars
            )
            reports.append(val_report.summary())
        print("\n".join(reports))
        self.bleu_sources, self.bleu_references = self.val_sources, self.val_references
        if self.val_sources is not None and len(self.val_sources) > options.val_bleu_sentences:
            # Scored every epoch: a fixed subset spread over the whole set (the final evaluation takes all).
            keep = np.unique(np.linspace(0, len(self.val_sources) - 1, options.val_bleu_sentences).astype(int))
            self.bleu_sources = [self.val_sources[i] for i in keep]
            self.bleu_references = [self.val_references[i] for i in keep]
        if not reused:
            if self.init_model is None:
                self.source_tokenizer, self.target_tokenizer = self._train_tokenizers(*train_pairs)
                if options.marian_compatible:  # sources end with the end token, as Marian's do
                    self.source_tokenizer = self.source_tokenizer.with_end()
            run.save_tokenizers(self.source_tokenizer, self.target_tokenizer)
        self.vocabulary_sizes = (self.source_tokenizer.vocabulary_size, self.target_tokenizer.vocabulary_size)
        self.description = f"parallel text, {self.train_description} training / {len(self.val_sources or [])} validation pairs"
        if self.bleu_sources is not self.val_sources:
            self.description += f" (BLEU each epoch on {len(self.bleu_sources)} of them)"
        self.config = {
            "name": "text",
            "family": self.family,
            "train": [options.train_src, options.train_tgt, options.train_tsv],
            "validation": [options.val_src, options.val_tgt, options.val_tsv],
            "tokenizer": options.subword_tokenizer,
            "joint_vocabulary": options.joint_vocabulary,
            "read": reports,
            "init_from": options.init_from,
        }

    def _train_tokenizers(self, sample, drawn_from):
        """Source and target tokenizers (one when joint) from the sampled pairs, written to files and let go."""
        import tempfile

        from keras_transformer.data.tokenizers import write_lines

        options = self.options
        with tempfile.TemporaryDirectory(prefix="kt-tokenizer-") as directory:
            paths = [os.path.join(directory, f"{side}.txt") for side in ("source", "target")]
            for side, path in enumerate(paths):
                write_lines(path, (pair[side] for pair in sample))
            count = len(sample)
            sample.clear()  # the trainers read the files: the sampled text leaves Python's memory
            if options.joint_vocabulary:
                tokenizer = options.train_tokenizer_files(paths, 2 * count, 2 * drawn_from)
                return tokenizer, tokenizer
            return tuple(options.train_tokenizer_files([path], count, drawn_from) for path in paths)

    def _read_training_text(self, run, resume, sample):
        """One streamed pass over the training files: skips counted, alignment checked, first sentences kept.

        Returns `((tokenizer sample pairs, pairs kept), [read report])`; the
        sample is drawn only when `sample` (the tokenizers are trained). A
        resumed run reads nothing ahead and reuses the report of its start.
        """
        import itertools

        from keras_transformer.data.readers import iter_parallel, parallel_report
        from keras_transformer.data.tokenizers import sample_lines

        options = self.options
        files = (options.train_src, options.train_tgt, options.train_tsv)
        if resume and run.has_tokenizers():
            earlier = run.read_json(run.config_file) if os.path.exists(run.file(run.config_file)) else {}
            reports = list(earlier.get("task", {}).get("read") or [])[:1]
            first = itertools.islice(iter_parallel(*files, max_line_chars=options.max_line_chars), CALIBRATION_SENTENCES)
            self.calibration = [source for source, _ in first]
            self.train_description = "streamed"
            return None, reports or ["(resumed: the training files were read when the run started)"]
        report = parallel_report(*files)
        self.calibration = []

        def pairs():
            for pair in iter_parallel(*files, max_line_chars=options.max_line_chars, report=report):
                if len(self.calibration) < CALIBRATION_SENTENCES:
                    self.calibration.append(pair[0])
                yield pair

        start = time.time()
        if self.show_progress:
            print(f"Reading {report.path}...", flush=True)
        if sample:
            drawn = sample_lines(pairs(), options.tokenizer_sample or TOKENIZER_SAMPLE, options.seed)
        else:
            drawn = None
            for _ in pairs():
                pass
        if not report.kept:
            raise ValueError(f"No usable sentence pair: {report.summary()}")
        self.train_description = f"{report.kept:,}"
        return drawn, [f"{report.summary()} ({time.time() - start:.0f} s)"]

    def model_config(self, model=None):
        """The `Transformer`'s keyword arguments (with `init_from`: its run's, with this run's dropout rates)."""
        options = self.options
        if self.init_model is not None:
            config = self.init_model.get_config()
            config = {name: config[name] for name in (*ARCHITECTURE, *INIT_KEYS)}
            config.update({name: getattr(options, name) for name in DROPOUT_RATES if getattr(options, name) is not None})
            return config
        config = options.architecture()
        if options.tie_embeddings:
            config["tie_embeddings"] = True
        if options.share_embeddings:
            config["share_embeddings"] = True
        if options.marian_compatible:
            config["zero_start_embedding"] = True
        config["source_vocabulary_size"], config["target_vocabulary_size"] = self.vocabulary_sizes
        return config

    def build_model(self):
        options = self.options
        model = Transformer(**self.model_config())
        if self.init_model is not None:
            model.set_weights(self.init_model.get_weights())
        schedule = TransformerSchedule(model.hidden_dim, options.warmup_steps, options.learning_rate_scale)
        model.compile(
            optimizer=transformer_adam(model.hidden_dim, learning_rate=schedule, accumulate_steps=options.accumulate_steps),
            label_smoothing=options.label_smoothing,
        )
        return model

    def fit_arguments(self):
        if not self.options.text:
            return dict(
                x=self.train_x, y=self.train_y, batch_size=self.options.batch_size,
                validation_data=(self.val_x, self.val_y),
            )  # fmt: skip
        return dict(
            x=self._training_stream(),
            shuffle=False,  # the stream shuffles itself, anew each pass
            steps_per_epoch=self.options.steps_per_epoch,
            validation_data=None if self.val_sources is None else self._validation_dataset(),
        )  # fmt: skip

    def _training_stream(self):
        """The training files streamed (`data.streaming`), shuffled in a bounded buffer, bucketed, batched."""
        from keras_transformer.data.pipeline import batch_pairs
        from keras_transformer.data.streaming import parallel_text_dataset

        options = self.options
        pairs = parallel_text_dataset(
            options.train_src, options.train_tgt, options.train_tsv, options.max_line_chars,
            shuffle_files=True, seed=options.seed,
        )  # fmt: skip
        return batch_pairs(
            pairs, self.source_tokenizer, self.target_tokenizer, options.max_length, options.batch_size,
            options.batch_by, shuffle_buffer=options.shuffle_buffer, seed=options.seed,
            repeat=options.steps_per_epoch is not None,
        )  # fmt: skip

    def _validation_dataset(self):
        from keras_transformer.data.pipeline import make_dataset

        options = self.options
        return make_dataset(
            self.val_sources, self.val_references, self.source_tokenizer, self.target_tokenizer, options.max_length,
            options.batch_size, batch_by=options.batch_by, shuffle=False, count_batches=True,
        )  # fmt: skip

    def _progress(self, label):
        from keras_transformer.translator import terminal_progress

        return terminal_progress(label=label) if self.show_progress else None

    def _translator(self, model):
        from keras_transformer.translator import Translator

        # Greedy: scored every epoch, so fast; `translate` and serving use beam search.
        return Translator(model, self.source_tokenizer, self.target_tokenizer, beam_size=1)

    def callbacks(self, model):
        if self.val_sources is None:
            return []
        from keras_transformer.evaluation import BleuCallback

        return [
            BleuCallback(self._translator(model), self.bleu_sources, self.bleu_references, progress=self.show_progress)
        ]

    def image_callbacks(self, model, log_dir):
        """Cross-attention of the first validation sentences (text runs)."""
        if self.val_sources is None:
            return []
        from keras_transformer.evaluation import AttentionImages

        return [AttentionImages(self._translator(model), self.val_sources[:ATTENTION_SENTENCES], log_dir)]

    @property
    def monitor(self):
        if not self.options.text:
            return ("val_loss", "min")
        return ("val_bleu", "max") if self.val_sources is not None else ("loss", "min")

    @property
    def scored(self):
        return not self.options.text or self.val_sources is not None

    def score(self, model):
        """Validation cross-entropy (built-in task) or greedy BLEU (text: the `val_bleu_sentences` scored each
        epoch), as the monitor logs it."""
        if not self.options.text:
            return self._teacher_forced(model)["cross_entropy"]
        from keras_transformer.evaluation import corpus_scores

        return corpus_scores(self._translator(model).translate(self.bleu_sources), self.bleu_references)["bleu"]

    def _teacher_forced(self, model):
        logits = model.predict(self.val_x, batch_size=self.options.batch_size, verbose=0)
        return {
            "cross_entropy": float(losses.MaskedSparseCategoricalCrossentropy()(self.val_y, logits)),
            **metrics.sequence_accuracy(self.val_y, np.argmax(logits, -1)),
        }

    def evaluate(self, model, run):
        if not self.options.text:
            return self._teacher_forced(model)
        if self.val_sources is None:
            return {}
        from keras_transformer.evaluation import corpus_scores

        hypotheses = self._translator(model).translate(self.val_sources, progress=self._progress("final decoding:"))
        run.write_text(run.hypotheses_file, "".join(h + "\n" for h in hypotheses))
        return corpus_scores(hypotheses, self.val_references)

    def calibration_sentences(self):
        return self.calibration
