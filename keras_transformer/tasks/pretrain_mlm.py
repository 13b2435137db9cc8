"""Masked-LM pre-training (`TransformerMaskedLM`, BERT's 80/10/10 masking) of an encoder to fine-tune."""

from keras_transformer import metrics, models
from keras_transformer.tasks.base import adam_with_warmup
from keras_transformer.tasks.lm import PlainTextTask

BUILT_IN_EXAMPLES = (20000, 500)


class PretrainMaskedLMTask(PlainTextTask):
    """The mask token is one id past the tokenizer's, so the encoder's vocabulary has one more id."""

    name = "pretrain-mlm"
    family = "pretrain-mlm"
    model_class = models.TransformerMaskedLM
    exported = False  # a pre-trained encoder is fine-tuned (`init_from`), not served
    data_seed = 41
    built_in_examples = BUILT_IN_EXAMPLES

    def prepare(self, run, resume=False):
        from keras_transformer.data import families

        options = self.options
        self.prepare_text(run, resume)
        self.mask_id = self.tokenizer.vocabulary_size
        ids = families.encoder_inputs(self.tokenizer, self.lines, options.max_length)
        val_ids = families.encoder_inputs(self.tokenizer, self.val_lines, options.max_length)
        vocabulary_size, batch_size, seed = self.mask_id + 1, options.batch_size, options.seed
        self.train = families.masked_lm_dataset(ids, self.mask_id, vocabulary_size, batch_size, seed=seed)
        self.val = families.masked_lm_dataset(val_ids, self.mask_id, vocabulary_size, batch_size, seed=seed,
                                              shuffle=False)  # fmt: skip
        self.description = (
            f"masked-LM pre-training ({self.source}), {len(self.lines)} training / {len(self.val_lines)} "
            "validation lines"
        )
        self.config = {"name": "pretrain-mlm", "family": "pretrain-mlm", "train": options.train_text,
                       "mask_id": self.mask_id}  # fmt: skip

    def build_model(self):
        options = self.options
        backbone = models.TransformerEncoderModel(self.tokenizer.vocabulary_size + 1, **options.architecture())
        model = models.TransformerMaskedLM(backbone)
        model.compile(optimizer=adam_with_warmup(options, len(self.lines), options.learning_rate or self.learning_rate))
        return model

    def fit_arguments(self):
        return dict(x=self.train, shuffle=False, validation_data=self.val)  # the dataset shuffles itself

    def evaluate(self, model, run):
        accuracy = metrics.MaskedAccuracy()
        for inputs, labels in self.val:
            accuracy.update_state(labels, model(inputs, training=False))
        return {"masked_token_accuracy": float(accuracy.result())}
