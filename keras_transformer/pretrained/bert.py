"""BERT checkpoints in the Hugging Face layout, read into a masked-LM, classify or tag run.

A BERT checkpoint is this project's encoder with options: token embeddings
not scaled, learned absolute positions, segment (token type) embeddings, a
LayerNorm on the summed embeddings, exact GELU, post-norm layers, a pooler
(tanh dense on the first position) and a masked-LM head whose output layer
is the token embedding with a bias: `TransformerEncoderModel(position=
"learned", scale_embeddings=False, embedding_norm=True,
segment_vocabulary_size=2, pooler=True)` under a `TransformerMaskedLM`.
BERT's `[PAD]`, `[UNK]`, `[CLS]` and `[SEP]` become this project's ids 0-3
(padding, unknown, start, end: `bert_order`), so the data pipelines' start
and end tokens are BERT's `[CLS]` and `[SEP]`. The tokenizer is the
checkpoint's `vocab.txt` with its `tokenizer_config.json` settings
(`data.tokenizers.BertTokenizer`). Reading needs neither torch nor
transformers: `config.json`, `model.safetensors` (or `pytorch_model.bin`
with torch), `vocab.txt`, optionally `tokenizer_config.json`.

The run's task (`import_bert(task=...)`): `"pretrain-mlm"` (the masked-LM
head read), `"classify"` (a `TransformerClassifier` over BERT's pooled
output: a `BertForSequenceClassification` checkpoint's classifier and
`id2label` read, so the run classifies as it does; otherwise a new head for
the labels given, to train) or `"tag"` (a `TransformerTagger`, its head
new). By default a checkpoint with a sequence-classification head becomes
a classify run, any other a pretrain-mlm run.
"""

import os

import numpy as np

from keras_transformer.pretrained.marian import (
    CheckpointError, CheckpointWeights, _read_json, check_activation, check_config_fields, check_destination,
    check_max_length, read_weights, write_run,
)

# BERT's activations (transformers' names) and the Keras activation computing the same.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu",
               "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate"}  # fmt: skip
# Config fields that, set otherwise, describe a model this project would compute differently.
REQUIRED = {"is_decoder": False, "add_cross_attention": False, "position_embedding_type": "absolute"}
TASKS = ("pretrain-mlm", "classify", "tag")
MLM_HEAD = "cls.predictions.transform.dense.weight"  # a checkpoint with BERT's masked-LM head has it
SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
           "mask_token": "[MASK]"}  # fmt: skip


def read_config(directory):
    """The checkpoint's `config.json`, checked to be a BERT model this project computes exactly."""
    config = _read_json(os.path.join(directory, "config.json"), "not a Hugging Face model directory")
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        raise CheckpointError(f"{directory}/config.json does not describe a BERT model (model_type \"bert\")")
    positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings")  # fmt: skip
    check_config_fields(config, positive, REQUIRED, "BERT")
    check_activation(config, "hidden_act", "gelu", ACTIVATIONS)
    if config["hidden_size"] % config["num_attention_heads"]:
        raise CheckpointError(f"config.json: hidden_size={config['hidden_size']} is not divisible by "
                              f"num_attention_heads={config['num_attention_heads']}")  # fmt: skip
    return config


def read_tokenizer(directory, config):
    """`(BertTokenizer, order, mask_id)`: the checkpoint's WordPiece tokenizer in this project's ids.

    `order[i]` is the checkpoint's id of this project's id `i`; `mask_id`
    this project's id of `[MASK]`.
    """
    from keras_transformer.data.tokenizers import BertTokenizer

    path = os.path.join(directory, "vocab.txt")
    try:
        with open(path, encoding="utf-8") as f:
            pieces = f.read().split("\n")
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the WordPiece vocabulary") from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not UTF-8 text (corrupt?): {error}") from None
    if pieces and pieces[-1] == "":
        pieces.pop()
    settings_path = os.path.join(directory, "tokenizer_config.json")
    settings = _read_json(settings_path, "") if os.path.exists(settings_path) else {}
    if not isinstance(settings, dict):
        raise CheckpointError(f"{settings_path} is not a tokenizer config (a JSON object)")
    if len(pieces) > config["vocab_size"]:
        raise CheckpointError(f"{path} has {len(pieces)} pieces; config.json's vocab_size is {config['vocab_size']}")
    if len(set(pieces)) != len(pieces):
        duplicate = next(p for i, p in enumerate(pieces) if p in pieces[:i])
        raise CheckpointError(f"{path} lists {duplicate!r} twice")
    index = {piece: i for i, piece in enumerate(pieces)}
    special = {}
    for name, default in SPECIAL.items():
        piece = settings.get(name, default)
        piece = piece.get("content", default) if isinstance(piece, dict) else piece
        if piece not in index:
            raise CheckpointError(f"{path} has no {piece!r} piece (the {name.replace('_', ' ')})")
        special[name] = index[piece]
    order = bert_order(len(pieces), special)
    flags = {}
    for name, ours, default in (("do_lower_case", "lowercase", True), ("tokenize_chinese_chars", "split_cjk", True)):
        value = settings.get(name, default)
        if not isinstance(value, bool):
            raise CheckpointError(f"{settings_path}: {name} must be true or false. Received: {value!r}")
        flags[ours] = value
    strip_accents = settings.get("strip_accents")
    if strip_accents is not None and not isinstance(strip_accents, bool):
        raise CheckpointError(
            f"{settings_path}: strip_accents must be true, false or null. Received: {strip_accents!r}"
        )
    tokenizer = BertTokenizer([pieces[i] for i in order], strip_accents=strip_accents, **flags)
    return tokenizer, order, int(np.flatnonzero(order == special["mask_token"])[0])


def bert_order(size, special):
    """The checkpoint id of each of this project's ids: `[PAD, UNK, CLS, SEP, every other id in order]`."""
    reserved = [special[name] for name in ("pad_token", "unk_token", "cls_token", "sep_token")]
    if len(set(reserved)) != 4:
        raise CheckpointError(f"the vocabulary's [PAD], [UNK], [CLS] and [SEP] must be 4 different pieces. "
                              f"Received ids: {reserved}")  # fmt: skip
    return np.array([*reserved, *(i for i in range(size) if i not in reserved)], "int64")


def _weight_name(name):
    """A stored name without `bert.`; LayerNorm `gamma`/`beta` (TensorFlow-converted) read as `weight`/`bias`."""
    name = name.removeprefix("bert.")
    return name.replace(".gamma", ".weight").replace(".beta", ".bias") if "LayerNorm" in name else name


def _dense(weights, prefix, layer, inputs, units):
    layer.kernel.assign(weights.get(f"{prefix}.weight", (inputs, units), transpose=True))
    layer.bias.assign(weights.get(f"{prefix}.bias", (units,)))


def _norm(weights, prefix, norm, d):
    norm.gamma.assign(weights.get(f"{prefix}.weight", (d,)))
    norm.beta.assign(weights.get(f"{prefix}.bias", (d,)))


def model_arguments(config, vocabulary_size, max_sequence_length=None, pooler=True, output_bias=True):
    """The `TransformerEncoderModel` keyword arguments of a checked BERT config."""
    return dict(
        vocabulary_size=vocabulary_size,
        num_layers=config["num_hidden_layers"],
        hidden_dim=config["hidden_size"],
        num_heads=config["num_attention_heads"],
        intermediate_dim=config["intermediate_size"],
        dropout=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
        activation=ACTIVATIONS[config.get("hidden_act", "gelu")],
        layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
        max_sequence_length=max_sequence_length or config["max_position_embeddings"],
        position="learned",
        normalize_first=False,
        scale_embeddings=False,
        embedding_norm=True,
        segment_vocabulary_size=int(config.get("type_vocab_size", 2)),
        output_bias=output_bias,
        pooler=pooler,
    )


def read_backbone(weights, config, order, max_sequence_length=None):
    """The `TransformerEncoderModel` holding the checkpoint's encoder (and pooler, when it has one)."""
    from keras_transformer.models import TransformerEncoderModel

    pooler = weights.has("pooler.dense.weight")
    arguments = model_arguments(config, len(order), max_sequence_length, pooler=pooler)
    backbone = TransformerEncoderModel(**arguments)
    d, d_ff, rows = arguments["hidden_dim"], arguments["intermediate_dim"], config["vocab_size"]
    length = arguments["max_sequence_length"]
    embedding = backbone.embedding
    words = weights.get("embeddings.word_embeddings.weight", (rows, d))
    embedding.token_embedding.embeddings.assign(words[order])
    positions = weights.get("embeddings.position_embeddings.weight", (config["max_position_embeddings"], d))
    embedding.position_encoding.position_embeddings.assign(positions[:length])
    segments = arguments["segment_vocabulary_size"]
    if segments:
        table = weights.get("embeddings.token_type_embeddings.weight", (segments, d))
        embedding.segment_embedding.embeddings.assign(table)
    _norm(weights, "embeddings.LayerNorm", embedding.layer_norm, d)
    for i, layer in enumerate(backbone.encoder.transformer_layers):
        prefix = f"encoder.layer.{i}"
        attention = layer.self_attention
        for ours, theirs in (("query", "query"), ("key", "key"), ("value", "value")):
            _dense(weights, f"{prefix}.attention.self.{theirs}", getattr(attention, f"{ours}_dense"), d, d)
        _dense(weights, f"{prefix}.attention.output.dense", attention.output_dense, d, d)
        _norm(weights, f"{prefix}.attention.output.LayerNorm", layer.self_attention_residual.layer_norm, d)
        _dense(weights, f"{prefix}.intermediate.dense", layer.feed_forward.intermediate_dense, d, d_ff)
        _dense(weights, f"{prefix}.output.dense", layer.feed_forward.output_dense, d_ff, d)
        _norm(weights, f"{prefix}.output.LayerNorm", layer.feed_forward_residual.layer_norm, d)
    if pooler:
        _dense(weights, "pooler.dense", backbone.pooler, d, d)
    return backbone


def masked_lm(weights, config, backbone, order):
    """The `TransformerMaskedLM` over `backbone`: BERT's masked-LM head, read when the checkpoint has it.

    (`BertModel` has a pooler and no head, `BertForMaskedLM` the reverse); a
    missing head is left as initialised.
    """
    from keras_transformer.models import TransformerMaskedLM

    head = weights.has(MLM_HEAD)
    if head and config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"config.json: hidden_act={config['hidden_act']!r}: the masked-LM head of this project "
                              "uses GELU")  # fmt: skip
    model = TransformerMaskedLM(backbone)
    if head:
        d, rows = backbone.hidden_dim, config["vocab_size"]
        _dense(weights, "cls.predictions.transform.dense", model.transform, d, d)
        _norm(weights, "cls.predictions.transform.LayerNorm", model.transform_norm, d)
        decoder = "cls.predictions.decoder.weight"
        words = weights.get("embeddings.word_embeddings.weight", (rows, d))
        if weights.has(decoder) and not np.array_equal(weights.get(decoder, (rows, d)), words):
            raise CheckpointError(f"{decoder} differs from the word embeddings; this project's masked-LM head reads "
                                  "the token embedding (tied, as BERT's)")  # fmt: skip
        bias = weights.get("cls.predictions.bias", (rows,)) if weights.has("cls.predictions.bias") else np.zeros(rows)
        backbone.embedding.token_embedding.bias.assign(np.asarray(bias, "float32")[order])
    return model


def head_kind(weights, config):
    """`"sequence"`, `"token"` or `None`: the checkpoint's `classifier` head, by `config.json`'s architectures."""
    if not weights.has("classifier.weight"):
        return None
    architectures = config.get("architectures") or []
    if any(str(name).endswith("ForTokenClassification") for name in architectures):
        return "token"
    if any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return "sequence"
    return None


def config_labels(config):
    """`config.json`'s `id2label` as a list in id order, or `None` without one."""
    id2label = config.get("id2label")
    if id2label is None:
        return None
    try:
        pairs = sorted((int(key), value) for key, value in dict(id2label).items())
    except (TypeError, ValueError):
        raise CheckpointError(f"config.json: id2label must map ids to names. Received: {id2label!r}") from None
    if [key for key, _ in pairs] != list(range(len(pairs))):
        raise CheckpointError(f"config.json: id2label's ids must be 0 to {len(pairs) - 1}. Received: {id2label!r}")
    return [str(value) for _, value in pairs]


def check_labels(labels, what):
    """`labels`: distinct non-empty names without tabs or line breaks."""
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"the {what} must be a list of names. Received: {labels!r}")
    bad = [x for x in labels if not x.strip() or any(c in x for c in "\t\n\r")]
    if bad:
        raise ValueError(f"the {what} must be non-empty names without tabs or line breaks. Received: {bad[0]!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"the {what} name {next(x for i, x in enumerate(labels) if x in labels[:i])!r} twice")
    return list(labels)


def classifier(weights, config, backbone, labels):
    """`(TransformerClassifier, labels, head)` over `backbone`; `head` "imported" or "new".

    A `BertForSequenceClassification` checkpoint's `classifier` (over the
    pooled output) and `id2label` are read (`labels`, when given, renames
    them: as many names); otherwise the head is new, for `labels`.
    """
    from keras_transformer.models import TransformerClassifier

    sequence_head = head_kind(weights, config) == "sequence"
    if sequence_head:
        if config.get("problem_type") in ("regression", "multi_label_classification"):
            raise CheckpointError(f"config.json: problem_type={config['problem_type']!r} is not supported (this "
                                  "project's classifier picks one label of several)")  # fmt: skip
        rows = np.shape(weights.weights["classifier.weight"])[0]
        names = config_labels(config) or [f"LABEL_{i}" for i in range(rows)]
        if len(names) != rows:
            raise CheckpointError(f"config.json's id2label names {len(names)} labels; the classifier has {rows}")
        if rows < 2:
            raise CheckpointError("the classifier has 1 output (a regression head); this project's classifier picks "
                                  "one label of several")  # fmt: skip
        if backbone.pooler is None:
            raise CheckpointError("the checkpoint has a classifier but no pooler (BERT's classifier reads it)")
        if labels is not None and len(labels) != rows:
            raise ValueError(f"the checkpoint's classifier has {rows} labels ({', '.join(names)}); "
                             f"{len(labels)} label names were given")  # fmt: skip
        labels = names if labels is None else labels
    elif labels is None:
        raise ValueError("the checkpoint has no sequence-classification head: name the classes the new head "
                         "learns (labels, `--labels a,b,...`)")  # fmt: skip
    check_labels(labels, "labels")
    if len(labels) < 2:
        raise ValueError(f"a classifier needs at least 2 labels. Received: {labels!r}")
    dropout = config.get("classifier_dropout")
    dropout = float(config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout)
    pooling = "pooler" if backbone.pooler is not None else "first"
    model = TransformerClassifier(backbone, len(labels), pooling=pooling, dropout=dropout)
    if sequence_head:
        _dense(weights, "classifier", model.classifier_head, backbone.hidden_dim, len(labels))
    return model, list(labels), "imported" if sequence_head else "new"


def tagger(weights, config, backbone, labels):
    """`(TransformerTagger, tags)` over `backbone`, its head new; tag 0 the padding tag `[PAD]`.

    The tags are `labels` or a `BertForTokenClassification` checkpoint's
    `id2label`; its classifier is not read: this project's tagger reads one
    piece per word (each word's first), BERT's token classifier every piece.
    """
    from keras_transformer.data.synthetic_language import TAGS
    from keras_transformer.models import TransformerTagger

    if labels is None and head_kind(weights, config) == "token":
        labels = config_labels(config)
    if labels is None:
        raise ValueError("name the tags the new head learns (labels, `--labels a,b,...`)")
    tags = [TAGS[0], *(tag for tag in check_labels(labels, "tags") if tag != TAGS[0])]
    return TransformerTagger(backbone, len(tags), dropout=float(config.get("hidden_dropout_prob", 0.1))), tags


def import_bert(checkpoint, out, name, max_sequence_length=None, task=None, labels=None):
    """Write the BERT checkpoint directory `checkpoint` as the run `out/name` of `task`.

    A `pretrain-mlm` run is a `TransformerMaskedLM` over the BERT encoder;
    `train.py --task classify` or `--task tag` with `--init-from out/name`
    (and `--freeze-layers K`) fine-tunes its encoder, and `--task
    pretrain-mlm --init-from` continues its pre-training. A `classify` run
    over a `BertForSequenceClassification` checkpoint classifies as that
    model does (its head and `id2label` read); a `classify` run of another
    checkpoint, and every `tag` run, has a new head for `labels`, which
    `train.py --init-from out/name` trains (a head whose labels the data's
    cover is kept). Checked and written as `import_marian` writes runs.

    Args:
        checkpoint: a Hugging Face BERT directory (`config.json`,
            `model.safetensors` or `pytorch_model.bin`, `vocab.txt`,
            optionally `tokenizer_config.json`).
        out: the folder of runs.
        name: the run's name, a folder inside `out`.
        max_sequence_length: the longest input the run takes (default and
            at most: the checkpoint's `max_position_embeddings`).
        task: `"pretrain-mlm"`, `"classify"` or `"tag"` (default:
            `"classify"` for a checkpoint with a sequence-classification
            head, else `"pretrain-mlm"`).
        labels: the class (classify) or tag (tag) names: required for a new
            head unless `config.json` names them (`id2label` of a
            classification checkpoint); for an imported classifier they
            rename its `id2label`.

    Returns:
        The run's path.
    """
    check_destination(checkpoint, out, name, "a Hugging Face BERT checkpoint's folder")
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS} for a BERT checkpoint. Received: task={task!r}")
    config = read_config(checkpoint)
    check_max_length(max_sequence_length, config["max_position_embeddings"])
    tokenizer, order, mask_id = read_tokenizer(checkpoint, config)
    weights = CheckpointWeights(read_weights(checkpoint), "BERT", _weight_name)
    if task is None:
        task = "classify" if head_kind(weights, config) == "sequence" else "pretrain-mlm"
    if labels is not None and task == "pretrain-mlm":
        raise ValueError("labels name a classifier's classes or a tagger's tags; a pretrain-mlm run has none "
                         "(a classify or tag run: task \"classify\" or \"tag\", `--task`)")  # fmt: skip
    backbone = read_backbone(weights, config, order, max_sequence_length)
    record = {"name": "bert", "family": task,
              "imported": {"format": "bert", "from": os.path.abspath(checkpoint), "config": config}}  # fmt: skip
    if task == "pretrain-mlm":
        model = masked_lm(weights, config, backbone, order)
        record.update(mask_id=mask_id, head="imported" if weights.has(MLM_HEAD) else "new")
    elif task == "classify":
        model, names, head = classifier(weights, config, backbone, labels)
        record.update(labels=names, head=head)
    else:
        model, names = tagger(weights, config, backbone, labels)
        record.update(labels=names, head="new")
    backbone_config = {key: value for key, value in backbone.get_config().items()
                       if key in model_arguments(config, 1)}  # fmt: skip
    return write_run(out, name, model, (tokenizer, tokenizer), backbone_config, record)
