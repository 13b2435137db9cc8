"""`train.py --task classify|tag|lm|pretrain-mlm`: data, model and evaluation of each family.

Each `*_task(args, run)` returns what `train.py` drives: the model
(compiled), `fit` arguments, the checkpoint monitor and a final
evaluation. Without files each uses the built-in `SyntheticLanguage`, with
a whole-word vocabulary; with files, a subword tokenizer trained on them
(TSV `text<TAB>label`, CoNLL `token<TAB>tag`, plain text). `--init-from`
starts classifiers and taggers from a pre-trained encoder (a `pretrain-mlm`
run, a classify/tag run, or a translation run's encoder) with that run's
tokenizer, and `--freeze-layers` freezes its lowest layers.
"""

import math
import os
import types

import keras
import numpy as np

from keras_transformer import fine_tuning, losses, metrics, models
from keras_transformer.data import families
from keras_transformer.data.synthetic_language import SENTIMENTS, TAGS, SyntheticLanguage
from keras_transformer.data.tokenizers import WordPieceTokenizer, load_tokenizers, save_tokenizers, train_tokenizer
from keras_transformer.models.presets import PRESETS
from keras_transformer.run_directory import RunDirectory
from keras_transformer.translator import TOKENIZER_DIR

FAMILIES = ("classify", "tag", "lm", "pretrain-mlm")
BUILT_IN_EXAMPLES = {"classify": (2000, 500), "tag": (2000, 500), "lm": (10000, 500), "pretrain-mlm": (20000, 500)}
# Peak learning rates: fine-tuning gently, pre-training (and language modelling) faster.
LEARNING_RATES = {"classify": 1e-3, "tag": 1e-3, "lm": 3e-3, "pretrain-mlm": 3e-3}


def _architecture(args):
    """The preset with the command line's overrides, as model keyword arguments."""
    config = dict(PRESETS[args.preset])
    for name in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "dropout", "position"):
        if getattr(args, name, None) is not None:
            config[name] = getattr(args, name)
    if args.normalize_first:
        config["normalize_first"] = True
    config["max_sequence_length"] = args.max_length
    return config


def _optimizer(args, num_examples):
    """Adam, linear warm-up to `--learning-rate` then cosine decay over the run's steps."""
    steps = max(1, args.epochs * math.ceil(num_examples / args.batch_size))
    warmup = min(args.warmup_steps, steps // 10)
    learning_rate = args.learning_rate or LEARNING_RATES[args.task]
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate,
        decay_steps=max(1, steps - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
        alpha=0.1,
    )
    return keras.optimizers.Adam(schedule)


def _sizes(args):
    train, val = BUILT_IN_EXAMPLES[args.task]
    return args.train_examples or train, args.val_examples or val


def _tokenizer(args, run, lines, built_in):
    """The run's tokenizer: the init run's, reloaded on resume, whole words, or trained on `lines`."""
    directory = run.file(TOKENIZER_DIR)
    if args.resume and os.path.isdir(directory):
        return load_tokenizers(directory)[0]
    if getattr(args, "init_from", None):
        tokenizer = load_tokenizers(RunDirectory(args.init_from).file(TOKENIZER_DIR))[0]
    elif built_in is not None:
        tokenizer = WordPieceTokenizer(built_in)
    else:
        tokenizer = train_tokenizer(args.tokenizer, lines, args.vocab_size)
    save_tokenizers(directory, tokenizer, tokenizer)
    return tokenizer


def pretrained_backbone(path):
    """The `TransformerEncoderModel` of the run at `path` (pre-trained, task or translation)."""
    model = RunDirectory(path).load_model(compile=False)
    if isinstance(model, models.Transformer):
        return models.TransformerEncoderModel.from_transformer(model)
    if isinstance(model, models.TransformerEncoderModel):
        return model
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"--init-from {path}: a {type(model).__name__} has no encoder to fine-tune.")
    return backbone


def _backbone(args, vocabulary_size):
    if args.init_from:
        backbone = pretrained_backbone(args.init_from)
        args.max_length = backbone.max_sequence_length
        return backbone
    return models.TransformerEncoderModel(vocabulary_size, **_architecture(args))


def _encoder_task(args, model, frozen, train, val, evaluate, description, config):
    model.compile(optimizer=_optimizer(args, len(train[0])))
    return types.SimpleNamespace(
        model=model,
        model_config=model.get_config(),
        description=description + (f"; frozen: {', '.join(frozen)}" if frozen else ""),
        config=config,
        fit_kwargs=dict(x=train[0], y=train[1], batch_size=args.batch_size, validation_data=val),
        make_callbacks=lambda model: [],
        monitor=("val_accuracy", "max"),
        evaluate=evaluate,
    )


def _check_split(path, train, validation):
    if not train or not validation:
        raise ValueError(
            f"{path}: too few usable examples to train and validate on ({len(train)} + {len(validation)})."
        )


def _freeze(args, model):
    if args.freeze_layers is None:
        return []
    return fine_tuning.freeze(model, up_to=None if args.freeze_layers < 0 else args.freeze_layers)


def classify_task(args, run):
    if args.train_tsv:
        texts, labels, report = families.read_labelled(args.train_tsv, args.max_line_chars)
        if args.val_tsv:
            val_texts, val_labels, _ = families.read_labelled(args.val_tsv, args.max_line_chars)
        else:  # no validation file: hold out 10% of the training lines
            cut = max(1, len(texts) // 10)
            texts, labels, val_texts, val_labels = texts[cut:], labels[cut:], texts[:cut], labels[:cut]
        print(report.summary())
        _check_split(args.train_tsv, texts, val_texts)
        label_names, built_in = families.label_vocabulary(labels), None
        source = args.train_tsv
    else:
        language = SyntheticLanguage()
        num_train, num_val = _sizes(args)
        words, _, labels = language.sample(num_train, seed=args.seed + 11)
        val_words, _, val_labels = language.sample(num_val, seed=args.seed + 12)
        texts, val_texts = [" ".join(w) for w in words], [" ".join(w) for w in val_words]
        labels, val_labels = [SENTIMENTS[i] for i in labels], [SENTIMENTS[i] for i in val_labels]
        label_names, built_in = list(SENTIMENTS), language.vocabulary
        source = "built-in sentiment of invented sentences"
    tokenizer = _tokenizer(args, run, texts, built_in)
    backbone = _backbone(args, tokenizer.vocabulary_size)
    model = models.TransformerClassifier(backbone, len(label_names), pooling=args.pooling, dropout=backbone.dropout)
    frozen = _freeze(args, model)
    train = families.classification_data(tokenizer, texts, labels, label_names, args.max_length)
    val = families.classification_data(tokenizer, val_texts, val_labels, label_names, args.max_length)

    def evaluate(model):
        predicted = np.argmax(model.predict(val[0], batch_size=args.batch_size, verbose=0), -1)
        per_class = {
            f"accuracy_{name}": float(np.mean(predicted[val[1] == i] == i))
            for i, name in enumerate(label_names)
            if np.any(val[1] == i)
        }
        return {"accuracy": float(np.mean(predicted == val[1])), **per_class}

    return _encoder_task(
        args, model, frozen, train, val, evaluate,
        f"classification ({source}), {len(texts)} training / {len(val_texts)} validation texts, "
        f"{len(label_names)} classes",
        {"name": "classify", "family": "classify", "train": args.train_tsv, "labels": label_names,
         "init_from": args.init_from},
    )  # fmt: skip


def tag_task(args, run):
    if args.train_conll:
        sentences, tags, report = families.read_conll(args.train_conll)
        print(report.summary())
        if args.val_conll:
            val_sentences, val_tags, _ = families.read_conll(args.val_conll)
        else:
            cut = max(1, len(sentences) // 10)
            sentences, tags, val_sentences, val_tags = sentences[cut:], tags[cut:], sentences[:cut], tags[:cut]
        _check_split(args.train_conll, sentences, val_sentences)
        tag_names = families.label_vocabulary([t for row in tags for t in row], reserved=[TAGS[0]])
        built_in = families.word_vocabulary(sentences, args.vocab_size)
        source = args.train_conll
    else:
        language = SyntheticLanguage()
        num_train, num_val = _sizes(args)
        sentences, tags, _ = language.sample(num_train, seed=args.seed + 21)
        val_sentences, val_tags, _ = language.sample(num_val, seed=args.seed + 22)
        tag_names, built_in = list(TAGS), language.vocabulary
        source = "built-in parts of speech of invented sentences"
    tokenizer = _tokenizer(args, run, None, built_in)
    backbone = _backbone(args, tokenizer.vocabulary_size)
    model = models.TransformerTagger(backbone, len(tag_names), dropout=backbone.dropout)
    frozen = _freeze(args, model)
    train = families.tagging_data(tokenizer, sentences, tags, tag_names, args.max_length)
    val = families.tagging_data(tokenizer, val_sentences, val_tags, tag_names, args.max_length)

    def evaluate(model):
        predicted = np.argmax(model.predict(val[0], batch_size=args.batch_size, verbose=0), -1)
        real = val[1] != 0
        correct = (predicted == val[1]) & real
        return {
            "token_accuracy": float(correct.sum() / real.sum()),
            "sentence_accuracy": float(np.mean(correct.sum(1) == real.sum(1))),
        }

    return _encoder_task(
        args, model, frozen, train, val, evaluate,
        f"tagging ({source}), {len(sentences)} training / {len(val_sentences)} validation sentences, "
        f"{len(tag_names) - 1} tags",
        {"name": "tag", "family": "tag", "train": args.train_conll, "labels": tag_names,
         "init_from": args.init_from},
    )  # fmt: skip


def _plain_text(args, task_seed):
    """Training and validation lines: `--train-text`/`--val-text`, or built-in sentences."""
    if args.train_text:
        from keras_transformer.data.readers import read_lines

        lines = [line.strip() for line in read_lines(args.train_text) if line.strip()]
        lines = [line for line in lines if len(line) <= args.max_line_chars]
        if args.val_text:
            val_lines = [line.strip() for line in read_lines(args.val_text) if line.strip()]
        else:
            cut = max(1, len(lines) // 20)
            lines, val_lines = lines[cut:], lines[:cut]
        _check_split(args.train_text, lines, val_lines)
        return lines, val_lines, None, args.train_text
    language = SyntheticLanguage()
    num_train, num_val = _sizes(args)
    lines = language.texts(num_train, seed=args.seed + task_seed)
    val_lines = language.texts(num_val, seed=args.seed + task_seed + 1)
    return lines, val_lines, language, "built-in invented sentences"


def lm_task(args, run):
    lines, val_lines, language, source = _plain_text(args, 31)
    tokenizer = _tokenizer(args, run, lines, language.vocabulary if language else None)
    model = models.TransformerLM(tokenizer.vocabulary_size, tie_embeddings=True, **_architecture(args))
    train = families.language_model_data(tokenizer, lines, args.max_length)
    val = families.language_model_data(tokenizer, val_lines, args.max_length)
    model.compile(optimizer=_optimizer(args, len(lines)), label_smoothing=args.label_smoothing)

    def evaluate(model):
        logits = model.predict(val[0], batch_size=args.batch_size, verbose=0)
        real = val[1] != 0
        correct = (np.argmax(logits, -1) == val[1]) & real
        cross_entropy = float(losses.MaskedSparseCategoricalCrossentropy()(val[1], logits))
        results = {"token_accuracy": float(correct.sum() / real.sum()), "cross_entropy": cross_entropy,
                   "perplexity": float(np.exp(cross_entropy))}  # fmt: skip
        # 200 samples from the start token: pure (temperature 1) and nucleus (top-p 0.9).
        for name, top_p in (("", None), ("_top_p", 0.9)):
            generated = model.generate(
                batch_size=200, max_length=args.max_length, method="sample", top_p=top_p, seed=args.seed
            )
            texts = [t.numpy().decode() for t in tokenizer.detokenize(generated)]
            results["samples" + name] = texts[:5]
            if language is not None:  # the share of samples that are sentences of the language
                results["grammatical" + name] = float(np.mean([language.is_grammatical(t) for t in texts]))
        return results

    return types.SimpleNamespace(
        model=model,
        model_config=model.get_config(),
        description=f"language modelling ({source}), {len(lines)} training / {len(val_lines)} validation lines",
        config={"name": "lm", "family": "lm", "train": args.train_text},
        fit_kwargs=dict(x=train[0], y=train[1], batch_size=args.batch_size, validation_data=val),
        make_callbacks=lambda model: [],
        monitor=("val_loss", "min"),
        evaluate=evaluate,
    )


def pretrain_mlm_task(args, run):
    lines, val_lines, language, source = _plain_text(args, 41)
    tokenizer = _tokenizer(args, run, lines, language.vocabulary if language else None)
    mask_id = tokenizer.vocabulary_size  # one id past the tokenizer's: the mask token
    backbone = models.TransformerEncoderModel(tokenizer.vocabulary_size + 1, **_architecture(args))
    model = models.TransformerMaskedLM(backbone)
    ids = families.encoder_inputs(tokenizer, lines, args.max_length)
    val_ids = families.encoder_inputs(tokenizer, val_lines, args.max_length)
    train = families.masked_lm_dataset(ids, mask_id, mask_id + 1, args.batch_size, seed=args.seed)
    val = families.masked_lm_dataset(val_ids, mask_id, mask_id + 1, args.batch_size, seed=args.seed, shuffle=False)
    model.compile(optimizer=_optimizer(args, len(lines)))

    def evaluate(model):
        accuracy = metrics.MaskedAccuracy()
        for inputs, labels in val:
            accuracy.update_state(labels, model(inputs, training=False))
        return {"masked_token_accuracy": float(accuracy.result())}

    return types.SimpleNamespace(
        model=model,
        model_config=model.get_config(),
        description=f"masked-LM pre-training ({source}), {len(lines)} training / {len(val_lines)} validation lines",
        config={"name": "pretrain-mlm", "family": "pretrain-mlm", "train": args.train_text, "mask_id": mask_id},
        fit_kwargs=dict(x=train, shuffle=False, validation_data=val),  # the dataset shuffles itself
        make_callbacks=lambda model: [],
        monitor=("val_loss", "min"),
        evaluate=evaluate,
    )


TASKS = {"classify": classify_task, "tag": tag_task, "lm": lm_task, "pretrain-mlm": pretrain_mlm_task}
