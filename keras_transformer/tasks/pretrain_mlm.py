"""Masked-LM pre-training (`TransformerMaskedLM`, BERT's 80/10/10 masking) of an encoder to fine-tune."""

import dataclasses

from keras_transformer import fine_tuning, metrics, models
from keras_transformer.tasks.base import IMPORTED_LEARNING_RATE, adam_with_warmup, imported_origin
from keras_transformer.tasks.lm import LanguageModelOptions, PlainTextTask

BUILT_IN_EXAMPLES = (20000, 500)


@dataclasses.dataclass
class PretrainMaskedLMOptions(LanguageModelOptions):
    """Plain text and continued pre-training: a masked-LM run (trained or an imported BERT), frozen layers."""

    fine_tuned = "a masked language model"


class PretrainMaskedLMTask(PlainTextTask):
    """From scratch, the mask token is one id past the tokenizer's, so the encoder's vocabulary has one more id.

    From `init_from` (a pretrain-mlm run: trained here, or a BERT imported by
    `kt-import`), pre-training goes on with that run's model, tokenizer and
    mask id (BERT's `[MASK]`) on the new text.
    """

    name = "pretrain-mlm"
    family = "pretrain-mlm"
    model_class = models.TransformerMaskedLM
    options_class = PretrainMaskedLMOptions
    exported = False  # a pre-trained encoder is fine-tuned (`init_from`), not served
    data_seed = 41
    built_in_examples = BUILT_IN_EXAMPLES

    def trains_tokenizer(self):
        return super().trains_tokenizer() and not self.options.init_from

    def prepare(self, run, resume=False):
        from keras_transformer.data import families
        from keras_transformer.run_directory import RunDirectory

        options = self.options
        self.pretrained = self.imported_from = tokenizer = None
        max_length = options.max_length
        if options.init_from:
            loaded = RunDirectory(options.init_from).load()
            if loaded.family != "pretrain-mlm" or not isinstance(loaded.model, models.TransformerMaskedLM):
                raise ValueError(f"`init_from` {options.init_from}: a {loaded.family} run is not a masked language "
                                 "model (a pretrain-mlm run: --task pretrain-mlm, or a BERT imported by "
                                 f"{_import_command()})")  # fmt: skip
            self.pretrained, tokenizer = loaded.model, loaded.source_tokenizer
            self.imported_from = imported_origin(loaded)
            max_length = min(max_length, self.pretrained.backbone.max_sequence_length)  # it reads at most its own
        self.prepare_text(run, resume, tokenizer)
        if self.pretrained is None:
            self.mask_id = self.tokenizer.vocabulary_size
            vocabulary_size = self.mask_id + 1
        else:
            self.mask_id = int(loaded.config["task"].get("mask_id", self.tokenizer.vocabulary_size))
            vocabulary_size = self.pretrained.backbone.vocabulary_size
        ids = families.encoder_inputs(self.tokenizer, self.lines, max_length)
        val_ids = families.encoder_inputs(self.tokenizer, self.val_lines, max_length)
        batch_size, seed = options.batch_size, options.seed
        self.train = families.masked_lm_dataset(ids, self.mask_id, vocabulary_size, batch_size, seed=seed)
        self.val = families.masked_lm_dataset(val_ids, self.mask_id, vocabulary_size, batch_size, seed=seed,
                                              shuffle=False)  # fmt: skip
        self.description = (
            f"masked-LM pre-training ({self.source}), {len(self.lines)} training / {len(self.val_lines)} "
            "validation lines"
        )
        self.config = {"name": "pretrain-mlm", "family": "pretrain-mlm", "train": options.train_text,
                       "mask_id": self.mask_id, "init_from": options.init_from,
                       "imported_from": self.imported_from}  # fmt: skip

    def build_model(self):
        options = self.options
        model = self.pretrained
        if model is None:
            backbone = models.TransformerEncoderModel(self.tokenizer.vocabulary_size + 1, **options.architecture())
            model = models.TransformerMaskedLM(backbone)
        if options.freeze_layers is not None:
            frozen = fine_tuning.freeze(model, up_to=None if options.freeze_layers < 0 else options.freeze_layers)
            self.description += f"; frozen: {', '.join(frozen)}"
        learning_rate = options.learning_rate or (IMPORTED_LEARNING_RATE if self.imported_from else self.learning_rate)
        model.compile(optimizer=adam_with_warmup(options, len(self.lines), learning_rate))
        return model

    def fit_arguments(self):
        return dict(x=self.train, shuffle=False, validation_data=self.val)  # the dataset shuffles itself

    def evaluate(self, model, run):
        accuracy = metrics.MaskedAccuracy()
        for inputs, labels in self.val:
            accuracy.update_state(labels, model(inputs, training=False))
        return {"masked_token_accuracy": float(accuracy.result())}


def _import_command():
    from keras_transformer import commands

    return commands.name("import")
