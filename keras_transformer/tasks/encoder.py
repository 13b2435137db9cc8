"""What the encoder-only tasks (classify, tag) share: options, a fresh or pre-trained backbone, freezing."""

import dataclasses

import numpy as np

from keras_transformer import fine_tuning, models
from keras_transformer.run_directory import RunDirectory
from keras_transformer.tasks.base import IMPORTED_LEARNING_RATE, Task, TaskOptions, adam_with_warmup, check_fine_tuning
from keras_transformer.tasks.base import imported_origin, load_or_make_tokenizer


@dataclasses.dataclass
class EncoderOptions(TaskOptions):
    """`TaskOptions` and fine-tuning: a pre-trained encoder, frozen layers, the peak learning rate."""

    init_from: str = None
    freeze_layers: int = None
    learning_rate: float = None

    def __post_init__(self):
        super().__post_init__()
        check_fine_tuning(self, "a pre-trained encoder")


def pretrained_encoder(path):
    """`(TransformerEncoderModel, tokenizer)` of the run at `path` (pre-trained, task or translation)."""
    return encoder_of(RunDirectory(path).load())


def encoder_of(run):
    """`(TransformerEncoderModel, tokenizer)` of a loaded run."""
    model = run.model
    if isinstance(model, models.Transformer):
        return models.TransformerEncoderModel.from_transformer(model), run.source_tokenizer
    if isinstance(model, models.TransformerEncoderModel):
        return model, run.source_tokenizer
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"`init_from` {run.path}: a {type(model).__name__} has no encoder to fine-tune.")
    return backbone, run.source_tokenizer


class EncoderTask(Task):
    """A classifier or tagger over a `TransformerEncoderModel`, fresh or from `init_from`.

    Subclasses set `self.texts`, `self.train`, `self.val` (arrays) and the
    label names in `prepare`, and build the head in `head(backbone)`. From
    a run of the same task whose labels cover the data's (an imported
    classifier, a classifier trained before), the head is kept too, with
    its labels (`self.pretrained_head`).
    """

    options_class = EncoderOptions
    learning_rate = 1e-3

    def _prepare_encoder(self, run, resume, make_tokenizer):
        """The tokenizer (the pre-trained run's, reloaded, or made) and the backbone."""
        options = self.options
        self.backbone = self.pretrained_head = self.imported_from = None
        if options.init_from:
            pretrained = RunDirectory(options.init_from).load()
            self.imported_from = imported_origin(pretrained)
            self.backbone, tokenizer = encoder_of(pretrained)
            self.tokenizer = load_or_make_tokenizer(run, resume, lambda: tokenizer)
            if pretrained.family == self.family and set(self.label_names) <= set(pretrained.labels):
                self.label_names = list(pretrained.labels)
                self.pretrained_head = pretrained.model
        else:
            self.tokenizer = load_or_make_tokenizer(run, resume, make_tokenizer)
        # A pre-trained encoder reads at most its own length.
        self.max_length = self.backbone.max_sequence_length if self.backbone else options.max_length

    def head(self, backbone):
        raise NotImplementedError

    def keep_head(self, model, pretrained):
        """Copy the output layer of `pretrained` (a model of this task, the same labels) into `model`."""
        raise NotImplementedError

    def build_model(self):
        options = self.options
        backbone = self.backbone or models.TransformerEncoderModel(
            self.tokenizer.vocabulary_size, **options.architecture()
        )
        model = self.head(backbone)
        if self.pretrained_head is not None:
            self.keep_head(model, self.pretrained_head)
            self.description += "; head and labels of the pre-trained run kept"
        self.frozen = []
        if options.freeze_layers is not None:
            up_to = None if options.freeze_layers < 0 else options.freeze_layers
            self.frozen = fine_tuning.freeze(model, up_to=up_to)
            self.description += f"; frozen: {', '.join(self.frozen)}"
        learning_rate = options.learning_rate or (IMPORTED_LEARNING_RATE if self.imported_from else self.learning_rate)
        model.compile(optimizer=adam_with_warmup(options, len(self.train[0]), learning_rate))
        return model

    def fit_arguments(self):
        return dict(x=self.train[0], y=self.train[1], batch_size=self.options.batch_size, validation_data=self.val)

    @property
    def monitor(self):
        return ("val_accuracy", "max")

    def predictions(self, model):
        """Arg-max ids of `model` on the validation inputs."""
        return np.argmax(model.predict(self.val[0], batch_size=self.options.batch_size, verbose=0), -1)
