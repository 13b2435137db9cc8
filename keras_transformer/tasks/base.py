"""The task interface and the typed options every task is built from.

A task turns its options into what a training run needs:

    task = TASKS["classify"](ClassifyOptions(train_tsv="reviews.tsv"))
    task.prepare(run)                  # read or generate data, train or load tokenizers (saved in `run`)
    model = task.build_model()         # compiled
    model.fit(callbacks=task.callbacks(model), epochs=..., **task.fit_arguments())
    results = task.evaluate(model, run)

`keras_transformer.tasks.trainer.train` drives exactly this; `train.py` only
parses flags into options. Options are plain dataclasses (no command line in
here); a field left `None` means "the preset's" or "the task's default".
"""

import dataclasses
import math
import os
import time

import keras

from keras_transformer.checks import check_positive_int, check_rate
from keras_transformer.models.common import DROPOUT_RATES, POSITIONS
from keras_transformer.models.presets import PRESETS
from keras_transformer.optimizers import accumulating_adam

ARCHITECTURE_OPTIONS = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", *DROPOUT_RATES, "position")
TOKENIZERS = ("sentencepiece", "wordpiece")
TOKENIZER_SAMPLE = 1_000_000  # lines per side a subword tokenizer is trained on, by default


@dataclasses.dataclass
class TaskOptions:
    """Options every task takes: architecture (a preset, then overrides), data and training sizes."""

    preset: str = "tiny"
    num_layers: int = None
    hidden_dim: int = None
    num_heads: int = None
    intermediate_dim: int = None
    dropout: float = None
    attention_dropout: float = None
    activation_dropout: float = None
    position: str = "sinusoidal"
    normalize_first: bool = False
    max_length: int = 64
    epochs: int = 10
    batch_size: int = 64
    accumulate_steps: int = 1
    warmup_steps: int = 1000
    label_smoothing: float = 0.1
    seed: int = 0
    tokenizer: str = None  # "sentencepiece" (the default) or "wordpiece", where the task trains one
    tokenizer_sample: int = None  # lines per side the tokenizer is trained on (None: TOKENIZER_SAMPLE)
    vocab_size: int = 8000
    max_line_chars: int = 1000
    train_examples: int = None
    val_examples: int = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: preset={self.preset!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"`position` must be one of {POSITIONS}. Received: position={self.position!r}")
        for name in ("max_length", "epochs", "batch_size", "accumulate_steps", "vocab_size", "max_line_chars"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.tokenizer_sample, "tokenizer_sample", allow_none=True)
        for name in DROPOUT_RATES:
            if getattr(self, name) is not None:
                check_rate(getattr(self, name), name)
        if self.tokenizer not in (None, *TOKENIZERS):
            raise ValueError(f"`tokenizer` must be one of {TOKENIZERS}. Received: tokenizer={self.tokenizer!r}")
        files = self.data_files()
        if any(name.startswith("val_") for name in files) and not any(name.startswith("train_") for name in files):
            raise ValueError(f"validation files need training files (received only `{sorted(files)[0]}`)")

    def architecture(self):
        """The preset with this task's overrides, as model keyword arguments."""
        config = dict(PRESETS[self.preset])
        config.update({name: getattr(self, name) for name in ARCHITECTURE_OPTIONS if getattr(self, name) is not None})
        if self.normalize_first:
            config["normalize_first"] = True
        config["max_sequence_length"] = self.max_length
        return config

    @property
    def subword_tokenizer(self):
        """The kind of subword tokenizer to train: `tokenizer`, or SentencePiece."""
        return self.tokenizer or TOKENIZERS[0]

    def train_tokenizer(self, *sides):
        """A `subword_tokenizer` of `vocab_size` pieces trained on a sample of each side's lines.

        At most `tokenizer_sample` lines per side (default `TOKENIZER_SAMPLE`),
        drawn with the run's seed from any iterable read once; several sides
        (a joint vocabulary) are sampled each on its own and joined.
        """
        import tempfile

        from keras_transformer.data.tokenizers import sample_lines, write_lines

        size = self.tokenizer_sample or TOKENIZER_SAMPLE
        with tempfile.TemporaryDirectory(prefix="kt-tokenizer-") as directory:
            paths, kept, total = [], 0, 0
            for number, side in enumerate(sides):
                lines, count = sample_lines((line for line in side if line.strip()), size, self.seed)
                if lines:
                    paths.append(write_lines(os.path.join(directory, f"side{number}.txt"), lines))
                kept, total = kept + len(lines), total + count
            if not paths:
                raise ValueError("Cannot train a tokenizer on no text: every line is empty.")
            return self.train_tokenizer_files(paths, kept, total)

    def train_tokenizer_files(self, paths, lines, drawn_from):
        """A `subword_tokenizer` trained on the sample written in `paths` (`lines` of `drawn_from`); printed."""
        from keras_transformer.data.tokenizers import TOKENIZERS as TRAINERS

        start = time.time()
        kind = self.subword_tokenizer
        tokenizer = TRAINERS[kind].train_files(paths, self.vocab_size, lines)
        print(
            f"Tokenizer ({kind}, {tokenizer.vocabulary_size} pieces) trained on {lines:,} of {drawn_from:,} lines "
            f"(at most {self.tokenizer_sample or TOKENIZER_SAMPLE:,} per side), {time.time() - start:.0f} s"
        )
        return tokenizer

    def data_files(self):
        """The names of the file options that are set."""
        names = [field.name for field in dataclasses.fields(self) if field.name.startswith(("train_", "val_"))]
        return {name for name in names if isinstance(getattr(self, name), str)}


class Task:
    """One training task: data, model, callbacks, monitored score, evaluation, export family.

    Subclasses set the class attributes and implement `prepare`,
    `build_model`, `fit_arguments` and `evaluate`.

    Class attributes:
        name: the task's name (the key in `keras_transformer.tasks.TASKS`).
        family: the model family the run's artifacts belong to (what
            `export` reads from `config.json` to pick its exporters).
        model_class: the class of the model `build_model` returns.
        exported: whether runs of this task are exported (pre-training
            runs are fine-tuned, not served).
        options_class: the dataclass of its options.

    Attributes set by `prepare`:
        description: one line on the data, for the run's log.
        config: what `config.json` records under `"task"`.
    """

    name = None
    family = None
    model_class = None
    exported = True
    options_class = TaskOptions

    show_progress = True  # progress lines (on a terminal only) for long steps outside `fit`; the trainer sets it

    def __init__(self, options):
        if not isinstance(options, self.options_class):
            raise ValueError(
                f"The {self.name} task takes {self.options_class.__name__}. Received: {type(options).__name__}"
            )
        self.options = options
        if options.tokenizer_sample is not None and not self.trains_tokenizer():
            raise ValueError(
                f"`tokenizer_sample`: the {self.name} task trains no subword tokenizer with these options; drop it"
            )
        if options.tokenizer is not None and not self.trains_tokenizer():
            raise ValueError(
                f"`tokenizer`: the {self.name} task trains no subword tokenizer with these options (built-in data, "
                "CoNLL words, or `init_from`'s tokenizer); drop it"
            )
        self.description = ""
        self.config = {}

    def trains_tokenizer(self):
        """Whether `prepare` trains a subword tokenizer (`tokenizer`, `vocab_size`) with these options."""
        return False

    def image_callbacks(self, model, log_dir):
        """Callbacks that draw the task's pictures into TensorBoard's `log_dir` each epoch (none by default)."""
        return []

    def prepare(self, run, resume=False):
        """Read or generate the data; train (or, resuming, reload) and save the tokenizers in `run`."""
        raise NotImplementedError

    def build_model(self):
        """The task's model, compiled."""
        raise NotImplementedError

    def fit_arguments(self):
        """`model.fit` keyword arguments for the data (`x`, `y`, `batch_size`, `validation_data`, ...)."""
        raise NotImplementedError

    def callbacks(self, model):
        """Callbacks that add validation scores to the logs (before checkpoints read them)."""
        return []

    @property
    def monitor(self):
        """`(log name, "min" | "max")`: what picks the best epoch's model."""
        return ("val_loss", "min")

    @property
    def scored(self):
        """Whether `score` can rank models (a validation set exists)."""
        return False

    def score(self, model):
        """The monitored score of `model` on the validation set (to compare averaged weights with)."""
        raise NotImplementedError(f"The {self.name} task has no validation score.")

    def model_config(self, model):
        """What `config.json` records as the model (a resumed run must build the same)."""
        return model.get_config()

    def evaluate(self, model, run):
        """The final validation results of the best model (a JSON-able dict); may write files into `run`."""
        raise NotImplementedError

    def calibration_sentences(self):
        """Source sentences for int8 calibration, saved in the run directory (`None`: none)."""
        return None


# The peak learning rate of a run started from an imported checkpoint (or from a run that was), unless one is
# given: transformers' default, gentle enough to keep what the checkpoint learnt; runs trained here use their task's.
IMPORTED_LEARNING_RATE = 5e-5


def imported_origin(run):
    """The checkpoint directory a loaded run descends from (imported by `kt-import`, or trained from one), or `None`."""
    task = run.config.get("task", {})
    return (task.get("imported") or {}).get("from") or task.get("imported_from")


def check_fine_tuning(options, what):
    """`freeze_layers` needs `init_from` (`what` it names); `init_from` brings its run's tokenizer (no `vocab_size`)."""
    if options.freeze_layers is not None and not options.init_from:
        raise ValueError(f"`freeze_layers` needs `init_from` ({what} to freeze)")
    vocabulary_default = next(f.default for f in dataclasses.fields(options) if f.name == "vocab_size")
    if options.init_from and options.vocab_size != vocabulary_default:
        raise ValueError("`init_from` takes the tokenizer of its run, and so its vocabulary; drop `vocab_size`")


def adam_with_warmup(options, num_examples, learning_rate):
    """Adam: linear warm-up to `learning_rate`, then cosine decay over the run's updates."""
    batches = options.epochs * math.ceil(num_examples / options.batch_size)
    steps = max(1, batches // options.accumulate_steps)
    warmup = min(options.warmup_steps, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=max(1, steps - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
        alpha=0.1,
    )
    return accumulating_adam(schedule, options.accumulate_steps)


def check_split(path, train, validation):
    """Both splits of a file hold examples; a `ValueError` names the file otherwise."""
    if not len(train) or not len(validation):
        raise ValueError(
            f"{path}: too few usable examples to train and validate on ({len(train)} + {len(validation)})."
        )


def hold_out(examples, share):
    """`(rest, held-out)`: the first `1 / share` of each list in `examples` held out."""
    cut = max(1, len(examples[0]) // share)
    return [items[cut:] for items in examples], [items[:cut] for items in examples]


def load_or_make_tokenizer(run, resume, make):
    """The run's tokenizer: reloaded when resuming a run that has one, else `make()` (saved)."""
    if resume and run.has_tokenizers():
        return run.load_tokenizers()[0]
    tokenizer = make()
    run.save_tokenizers(tokenizer)
    return tokenizer
