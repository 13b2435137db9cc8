"""Decoder-only language modelling (`TransformerLM`) on plain text or built-in sentences."""

import dataclasses

import numpy as np

from keras_transformer import losses, metrics, models
from keras_transformer.tasks.base import Task, TaskOptions, adam_with_warmup, check_fine_tuning, check_split, hold_out
from keras_transformer.tasks.base import IMPORTED_LEARNING_RATE, imported_origin, load_or_make_tokenizer

BUILT_IN_EXAMPLES = (10000, 500)
SAMPLES = 200  # generated from the start token when evaluating


@dataclasses.dataclass
class PlainTextOptions(TaskOptions):
    """`TaskOptions`, plain-text files (one example per line) and the peak learning rate."""

    train_text: str = None
    val_text: str = None
    learning_rate: float = None


class PlainTextTask(Task):
    """A task on lines of plain text (language modelling, masked-LM pre-training).

    `prepare_text` reads `train_text` (holding out 5% without `val_text`) or
    draws sentences of `SyntheticLanguage` with the task's `data_seed`.
    """

    options_class = PlainTextOptions
    learning_rate = 3e-3
    data_seed = 0
    built_in_examples = BUILT_IN_EXAMPLES

    def trains_tokenizer(self):
        return bool(self.options.train_text)

    def prepare_text(self, run, resume, tokenizer=None):
        """Read or draw the lines; the tokenizer: `tokenizer` (a pre-trained run's), the resumed run's or made."""
        from keras_transformer.data.tokenizers import WordPieceTokenizer

        options = self.options
        self.language = None
        if options.train_text:
            from keras_transformer.data.readers import read_lines

            lines = [line.strip() for line in read_lines(options.train_text) if line.strip()]
            lines = [line for line in lines if len(line) <= options.max_line_chars]
            if options.val_text:
                val_lines = [line.strip() for line in read_lines(options.val_text) if line.strip()]
            else:
                (lines,), (val_lines,) = hold_out([lines], 20)
            check_split(options.train_text, lines, val_lines)
            self.source = options.train_text

            def make_tokenizer():
                return options.train_tokenizer(lines)

        else:
            from keras_transformer.data.synthetic_language import SyntheticLanguage

            self.language = SyntheticLanguage()
            num_train = options.train_examples or self.built_in_examples[0]
            num_val = options.val_examples or self.built_in_examples[1]
            lines = self.language.texts(num_train, seed=options.seed + self.data_seed)
            val_lines = self.language.texts(num_val, seed=options.seed + self.data_seed + 1)
            self.source = "built-in invented sentences"

            def make_tokenizer():
                return WordPieceTokenizer(self.language.vocabulary)

        self.tokenizer = load_or_make_tokenizer(run, resume, make_tokenizer if tokenizer is None else lambda: tokenizer)
        self.lines, self.val_lines = lines, val_lines


@dataclasses.dataclass
class LanguageModelOptions(PlainTextOptions):
    """`PlainTextOptions` and fine-tuning: a trained or imported language model, frozen layers."""

    init_from: str = None
    freeze_layers: int = None
    fine_tuned = "a language model"  # what `init_from` names, for messages (not a field)

    def __post_init__(self):
        super().__post_init__()
        check_fine_tuning(self, self.fine_tuned)


class LanguageModelTask(PlainTextTask):
    name = "lm"
    family = "lm"
    model_class = models.TransformerLM
    options_class = LanguageModelOptions
    data_seed = 31

    def trains_tokenizer(self):
        return super().trains_tokenizer() and not self.options.init_from

    def prepare(self, run, resume=False):
        from keras_transformer.data import families

        options = self.options
        self.pretrained = self.imported_from = None
        if options.init_from:  # a language model run (trained or imported): its model and tokenizer
            from keras_transformer.run_directory import RunDirectory

            loaded = RunDirectory(options.init_from).load()
            if not isinstance(loaded.model, models.TransformerLM):
                raise ValueError(f"`init_from` {options.init_from}: a {type(loaded.model).__name__} is not a "
                                 "language model (a TransformerLM run: --task lm, or an imported GPT-2)")  # fmt: skip
            self.pretrained, self.imported_from = loaded.model, imported_origin(loaded)
        self.prepare_text(run, resume, None if self.pretrained is None else loaded.source_tokenizer)
        max_length = options.max_length
        if self.pretrained is not None:  # it reads at most its own length
            max_length = min(max_length, self.pretrained.max_sequence_length)
        self.train = families.language_model_data(self.tokenizer, self.lines, max_length)
        self.val = families.language_model_data(self.tokenizer, self.val_lines, max_length)
        self.description = (
            f"language modelling ({self.source}), {len(self.lines)} training / {len(self.val_lines)} validation lines"
        )
        self.config = {"name": "lm", "family": "lm", "train": options.train_text, "init_from": options.init_from,
                       "imported_from": self.imported_from}  # fmt: skip

    def build_model(self):
        from keras_transformer import fine_tuning

        options = self.options
        model = self.pretrained or models.TransformerLM(
            self.tokenizer.vocabulary_size, tie_embeddings=True, **options.architecture()
        )
        if options.freeze_layers is not None:
            frozen = fine_tuning.freeze(model, up_to=None if options.freeze_layers < 0 else options.freeze_layers)
            self.description += f"; frozen: {', '.join(frozen)}"
        learning_rate = options.learning_rate or (IMPORTED_LEARNING_RATE if self.imported_from else self.learning_rate)
        model.compile(optimizer=adam_with_warmup(options, len(self.lines), learning_rate),
                      label_smoothing=options.label_smoothing)  # fmt: skip
        return model

    def fit_arguments(self):
        return dict(x=self.train[0], y=self.train[1], batch_size=self.options.batch_size, validation_data=self.val)

    def evaluate(self, model, run):
        options = self.options
        inputs, labels = self.val
        logits = model.predict(inputs, batch_size=options.batch_size, verbose=0)
        cross_entropy = float(losses.MaskedSparseCategoricalCrossentropy()(labels, logits))
        results = {"token_accuracy": metrics.sequence_accuracy(labels, np.argmax(logits, -1))["token_accuracy"],
                   "cross_entropy": cross_entropy, "perplexity": float(np.exp(cross_entropy))}  # fmt: skip
        # Samples from the start token: pure (temperature 1) and nucleus (top-p 0.9).
        for name, top_p in (("", None), ("_top_p", 0.9)):
            generated = model.generate(
                batch_size=SAMPLES, max_length=options.max_length, method="sample", top_p=top_p, seed=options.seed
            )
            # Byte-level pieces (GPT-2's) may end a sample inside a character.
            texts = [t.numpy().decode("utf-8", "replace") for t in self.tokenizer.detokenize(generated)]
            results["samples" + name] = texts[:5]
            if self.language is not None:  # the share of samples that are sentences of the language
                results["grammatical" + name] = float(np.mean([self.language.is_grammatical(t) for t in texts]))
        return results
