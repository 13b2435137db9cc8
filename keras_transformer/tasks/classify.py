"""N-to-1: sentence classification (`TransformerClassifier`) on `text<TAB>label` lines or built-in data."""

import dataclasses

import numpy as np

from keras_transformer import models
from keras_transformer.tasks.base import check_split, hold_out
from keras_transformer.tasks.encoder import EncoderOptions, EncoderTask

BUILT_IN_EXAMPLES = (2000, 500)


@dataclasses.dataclass
class ClassifyOptions(EncoderOptions):
    """`EncoderOptions`, the labelled files and the sentence vector's pooling."""

    train_tsv: str = None
    val_tsv: str = None
    pooling: str = None  # "first", "mean" or "pooler"; default: "pooler" for a backbone with one, else "mean"


class ClassifyTask(EncoderTask):
    name = "classify"
    family = "classify"
    model_class = models.TransformerClassifier
    options_class = ClassifyOptions

    def trains_tokenizer(self):
        return bool(self.options.train_tsv) and not self.options.init_from

    def prepare(self, run, resume=False):
        from keras_transformer.data import families
        from keras_transformer.data.synthetic_language import SENTIMENTS, SyntheticLanguage
        from keras_transformer.data.tokenizers import WordPieceTokenizer

        options = self.options
        if options.train_tsv:
            texts, labels, report = families.read_labelled(options.train_tsv, options.max_line_chars)
            if options.val_tsv:
                val_texts, val_labels, _ = families.read_labelled(options.val_tsv, options.max_line_chars)
            else:  # no validation file: hold out 10% of the training lines
                (texts, labels), (val_texts, val_labels) = hold_out([texts, labels], 10)
            print(report.summary())
            check_split(options.train_tsv, texts, val_texts)
            self.label_names = families.label_vocabulary(labels)
            source = options.train_tsv

            def make_tokenizer():
                return options.train_tokenizer(texts)

        else:
            language = SyntheticLanguage()
            num_train, num_val = options.train_examples or BUILT_IN_EXAMPLES[0], options.val_examples or BUILT_IN_EXAMPLES[1]
            words, _, labels = language.sample(num_train, seed=options.seed + 11)
            val_words, _, val_labels = language.sample(num_val, seed=options.seed + 12)
            texts, val_texts = [" ".join(w) for w in words], [" ".join(w) for w in val_words]
            labels, val_labels = [SENTIMENTS[i] for i in labels], [SENTIMENTS[i] for i in val_labels]
            self.label_names = list(SENTIMENTS)
            source = "built-in sentiment of invented sentences"

            def make_tokenizer():
                return WordPieceTokenizer(language.vocabulary)

        self._prepare_encoder(run, resume, make_tokenizer)
        self.train = families.classification_data(self.tokenizer, texts, labels, self.label_names, self.max_length)
        self.val = families.classification_data(self.tokenizer, val_texts, val_labels, self.label_names, self.max_length)
        self.description = (
            f"classification ({source}), {len(texts)} training / {len(val_texts)} validation texts, "
            f"{len(self.label_names)} classes"
        )
        self.config = {"name": "classify", "family": "classify", "train": options.train_tsv,
                       "labels": self.label_names, "init_from": options.init_from,
                       "imported_from": self.imported_from}  # fmt: skip

    def head(self, backbone):
        default = "mean" if backbone.pooler is None else "pooler"
        pooling = self.options.pooling or getattr(self.pretrained_head, "pooling", default)
        return models.TransformerClassifier(backbone, len(self.label_names), pooling=pooling, dropout=backbone.dropout)

    def keep_head(self, model, pretrained):
        if model.pooling != pretrained.pooling:
            raise ValueError(f"`pooling` {model.pooling!r}: the classifier of `init_from` reads {pretrained.pooling!r} "
                             "(its head is kept: its labels cover the data's)")  # fmt: skip
        model.classifier_head.set_weights(pretrained.classifier_head.get_weights())

    def evaluate(self, model, run):
        predicted, labels = self.predictions(model), self.val[1]
        per_class = {
            f"accuracy_{name}": float(np.mean(predicted[labels == i] == i))
            for i, name in enumerate(self.label_names)
            if np.any(labels == i)
        }
        return {"accuracy": float(np.mean(predicted == labels)), **per_class}
