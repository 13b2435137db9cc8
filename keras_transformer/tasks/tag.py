"""N-to-N: one tag per word (`TransformerTagger`) on CoNLL `token<TAB>tag` files or built-in data."""

import dataclasses

from keras_transformer import metrics, models
from keras_transformer.tasks.base import check_split, hold_out
from keras_transformer.tasks.encoder import EncoderOptions, EncoderTask

BUILT_IN_EXAMPLES = (2000, 500)


@dataclasses.dataclass
class TagOptions(EncoderOptions):
    """`EncoderOptions` and the CoNLL files."""

    train_conll: str = None
    val_conll: str = None


class TagTask(EncoderTask):
    name = "tag"
    family = "tag"
    model_class = models.TransformerTagger
    options_class = TagOptions

    def prepare(self, run, resume=False):
        from keras_transformer.data import families
        from keras_transformer.data.synthetic_language import TAGS, SyntheticLanguage
        from keras_transformer.data.tokenizers import WordPieceTokenizer

        options = self.options
        if options.train_conll:
            sentences, tags, report = families.read_conll(options.train_conll)
            print(report.summary())
            if options.val_conll:
                val_sentences, val_tags, _ = families.read_conll(options.val_conll)
            else:
                (sentences, tags), (val_sentences, val_tags) = hold_out([sentences, tags], 10)
            check_split(options.train_conll, sentences, val_sentences)
            self.label_names = families.label_vocabulary([t for row in tags for t in row], reserved=[TAGS[0]])
            vocabulary = families.word_vocabulary(sentences, options.vocab_size)
            source = options.train_conll
        else:
            language = SyntheticLanguage()
            num_train, num_val = options.train_examples or BUILT_IN_EXAMPLES[0], options.val_examples or BUILT_IN_EXAMPLES[1]
            sentences, tags, _ = language.sample(num_train, seed=options.seed + 21)
            val_sentences, val_tags, _ = language.sample(num_val, seed=options.seed + 22)
            self.label_names, vocabulary = list(TAGS), language.vocabulary
            source = "built-in parts of speech of invented sentences"
        self._prepare_encoder(run, resume, lambda: WordPieceTokenizer(vocabulary))
        self.train = families.tagging_data(self.tokenizer, sentences, tags, self.label_names, self.max_length)
        self.val = families.tagging_data(self.tokenizer, val_sentences, val_tags, self.label_names, self.max_length)
        self.description = (
            f"tagging ({source}), {len(sentences)} training / {len(val_sentences)} validation sentences, "
            f"{len(self.label_names) - 1} tags"
        )
        self.config = {"name": "tag", "family": "tag", "train": options.train_conll, "labels": self.label_names,
                       "init_from": options.init_from, "imported_from": self.imported_from}  # fmt: skip

    def head(self, backbone):
        return models.TransformerTagger(backbone, len(self.label_names), dropout=backbone.dropout)

    def keep_head(self, model, pretrained):
        model.tagger_head.set_weights(pretrained.tagger_head.get_weights())

    def evaluate(self, model, run):
        return metrics.sequence_accuracy(self.val[1], self.predictions(model))
