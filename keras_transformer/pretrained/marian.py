"""Marian (OPUS-MT) checkpoints in the Hugging Face layout: read into a run directory, and the weight mapping back.

A Marian checkpoint is the paper's Transformer: post-norm layers, sinusoidal
positions, embeddings scaled by `sqrt(d_model)`, biases on every projection,
one embedding shared by the encoder, the decoder and the output layer. What
differs from this project's defaults is set as options of the same model
(`Transformer(position_layout="concatenated", output_bias=True,
activation="silu")`), and Marian's ids are mapped onto the reserved ids
(`data.tokenizers.marian_order`). Reading needs neither torch nor
transformers: `config.json`, `model.safetensors` (or its shards; a
`pytorch_model.bin` only when torch is installed), `source.spm`,
`target.spm` and `vocab.json` (and `target_vocab.json` with separate
vocabularies).
"""

import json
import os

import numpy as np

from keras_transformer.vocabulary import PAD_ID, START_ID


# Marian's feed-forward activations (transformers' names) and the Keras activation computing the same.
ACTIVATIONS = {
    "swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu",
    "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",  # tanh approximations
}  # fmt: skip
# Config fields that, set otherwise, describe a model this project would compute differently.
REQUIRED = {
    "is_encoder_decoder": True,
    "scale_embedding": True,
    "normalize_before": False,
    "normalize_embedding": False,
    "layernorm_embedding": False,
    "add_final_layer_norm": False,
    "static_position_embeddings": True,
    "add_bias_logits": False,
}
SAME_SIZES = (
    ("encoder_layers", "decoder_layers"),
    ("encoder_ffn_dim", "decoder_ffn_dim"),
    ("encoder_attention_heads", "decoder_attention_heads"),
)
SPECIAL_PIECES = {"eos": "</s>", "unk": "<unk>", "pad": "<pad>"}


class CheckpointError(ValueError):
    """A checkpoint directory that is missing files, corrupt, or describes a model this project cannot represent."""


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: {what}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not JSON (corrupt or truncated?): {error}") from None


def read_model_type(directory):
    """The `model_type` of the Hugging Face checkpoint directory `directory` (its `config.json`)."""
    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory} is not a directory (a Hugging Face checkpoint's folder)")
    config = _read_json(os.path.join(directory, "config.json"), "not a Hugging Face model directory")
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory}/config.json is not a model config (a JSON object)")
    return config.get("model_type")


def read_config(directory):
    """The checkpoint's `config.json`, checked to be a Marian model this project computes exactly.

    Raises:
        CheckpointError: one line naming the field and its value.
    """
    config = _read_json(os.path.join(directory, "config.json"), "not a Hugging Face model directory")
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory}/config.json is not a model config (a JSON object)")
    model_type = config.get("model_type")
    if model_type != "marian":
        raise CheckpointError(f"{directory} holds a {model_type!r} model; only Marian (OPUS-MT) checkpoints are read: "
                              "config.json must say model_type \"marian\"")  # fmt: skip
    required = ("d_model", "vocab_size", "encoder_layers", "encoder_ffn_dim", "encoder_attention_heads", "pad_token_id")
    for field in required:
        if not isinstance(config.get(field), int) or isinstance(config.get(field), bool):
            raise CheckpointError(f"config.json: {field} must be an integer. Received: {config.get(field)!r}")
    for field, value in REQUIRED.items():
        if field in config and bool(config[field]) != value:
            raise CheckpointError(
                f"config.json: {field}={config[field]!r} is not supported (this project computes Marian models with "
                f"{field}={value})"
            )
    if config.get("scale_embedding") is not True:
        raise CheckpointError(f"config.json: scale_embedding={config.get('scale_embedding')!r} is not supported "
                              "(OPUS-MT models scale embeddings by sqrt(d_model): scale_embedding=true)")  # fmt: skip
    for encoder, decoder in SAME_SIZES:
        if config.get(decoder, config[encoder]) != config[encoder]:
            raise CheckpointError(f"config.json: {encoder}={config[encoder]} and {decoder}={config[decoder]} differ; "
                                  "the encoder and decoder must have the same size")  # fmt: skip
    activation = config.get("activation_function", "gelu")
    if activation not in ACTIVATIONS:
        raise CheckpointError(
            f"config.json: activation_function={activation!r} is not supported (supported: {sorted(ACTIVATIONS)})"
        )
    start = config.get("decoder_start_token_id", config["pad_token_id"])
    if start != config["pad_token_id"]:
        raise CheckpointError(f"config.json: decoder_start_token_id={start} is not the pad_token_id "
                              f"{config['pad_token_id']}; Marian decoders start from the pad token")  # fmt: skip
    if config["d_model"] % config["encoder_attention_heads"]:
        raise CheckpointError(f"config.json: d_model={config['d_model']} is not divisible by "
                              f"encoder_attention_heads={config['encoder_attention_heads']}")  # fmt: skip
    return config


def _vocabulary(path, size, what):
    """Pieces in id order from a `vocab.json` (`{piece: id}`) that must hold ids `0..size-1`."""
    mapping = _read_json(path, what)
    if not isinstance(mapping, dict) or not all(isinstance(i, int) for i in mapping.values()):
        raise CheckpointError(f"{path} is not a vocabulary ({{piece: id}})")
    pieces = [None] * size
    for piece, index in mapping.items():
        if not 0 <= index < size or pieces[index] is not None:
            raise CheckpointError(f"{path}: id {index} ({piece!r}) is outside 0..{size - 1} or given twice; "
                                  f"the model has {size} ids")  # fmt: skip
        pieces[index] = piece
    missing = [i for i, piece in enumerate(pieces) if piece is None]
    if missing:
        raise CheckpointError(f"{path} has no piece for {len(missing)} of the model's {size} ids (first: {missing[0]})")
    for name, piece in SPECIAL_PIECES.items():
        if piece not in mapping:
            raise CheckpointError(f"{path} has no {piece!r} piece")
    return pieces


def _special(pieces):
    index = {piece: i for i, piece in enumerate(pieces)}
    return {name: index[piece] for name, piece in SPECIAL_PIECES.items()}


def read_tokenizers(directory, config):
    """`(source, target)` `MarianTokenizer`s of the checkpoint, and whether the vocabularies are separate."""
    from keras_transformer.data.tokenizers import MarianTokenizer

    separate = not config.get("share_encoder_decoder_embeddings", True)
    source_size = config["vocab_size"]
    target_size = config.get("decoder_vocab_size") or source_size
    source_pieces = _vocabulary(os.path.join(directory, "vocab.json"), source_size, "the vocabulary")
    target_pieces = source_pieces
    if separate:
        target_pieces = _vocabulary(os.path.join(directory, "target_vocab.json"), target_size,
                                    "the target vocabulary (share_encoder_decoder_embeddings is false)")  # fmt: skip
    elif target_size != source_size:
        raise CheckpointError(f"config.json: decoder_vocab_size={target_size} differs from vocab_size={source_size} "
                              "while share_encoder_decoder_embeddings is true")  # fmt: skip
    special = _special(target_pieces)
    for name, field in (("pad", "pad_token_id"), ("eos", "eos_token_id")):
        value = config.get(field, special[name])
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else value
        if value != special[name]:
            raise CheckpointError(f"config.json: {field}={value!r} is not the id of {SPECIAL_PIECES[name]!r} "
                                  f"({special[name]}) in the target vocabulary")  # fmt: skip
    tokenizers = []
    for side, pieces, append_end in (("source", source_pieces, True), ("target", target_pieces, False)):
        path = os.path.join(directory, f"{side}.spm")
        try:
            with open(path, "rb") as f:
                proto = f.read()
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing: the {side} SentencePiece model") from None
        try:
            tokenizers.append(MarianTokenizer(proto, pieces, _special(pieces), append_end=append_end))
        except RuntimeError:
            raise CheckpointError(f"{path} is not a SentencePiece model (corrupt or truncated?)") from None
        except ValueError as error:
            raise CheckpointError(f"{side} vocabulary: {error}") from None
    return tuple(tokenizers), separate


def read_weights(directory):
    """`{name: float32 array}` of `model.safetensors` (one file or shards), else `pytorch_model.bin` with torch."""
    path = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    files = [path] if os.path.exists(path) else []
    if not files and os.path.exists(index):
        weight_map = _read_json(index, "the shard index").get("weight_map", {})
        files = [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]
    if files:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        weights = {}
        for file in files:
            try:
                weights.update(load_file(file))
            except FileNotFoundError:
                raise CheckpointError(f"{file} is missing: a shard model.safetensors.index.json names") from None
            except (SafetensorError, OSError, ValueError) as error:
                raise CheckpointError(f"{file} is not a safetensors file (corrupt or truncated?): {error}") from None
        return weights
    path = os.path.join(directory, "pytorch_model.bin")
    if not os.path.exists(path):
        raise CheckpointError(f"{directory} has no weights: model.safetensors or pytorch_model.bin")
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path} is a PyTorch pickle, which needs torch to read: pip install torch, or save "
                              "the model as model.safetensors")  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch reports a damaged pickle in many ways
        raise CheckpointError(f"{path} could not be read (corrupt or truncated?): {str(error).splitlines()[0]}") from None
    return {name: value.float().numpy() for name, value in state.items()}


class CheckpointWeights:
    """A checkpoint's tensors by name (as `rename` spells it), each one's shape checked when read.

    Args:
        weights: `{name: array}` (`read_weights`).
        model: the model's name, for messages ("Marian", "BERT", ...).
        rename: the name a stored name is read under (a prefix dropped, ...).
    """

    def __init__(self, weights, model, rename=lambda name: name):
        self.model = model
        self.weights = {rename(name): value for name, value in weights.items()}

    def has(self, name):
        return name in self.weights

    def get(self, name, shape, transpose=False):
        """The float32 tensor `name` (transposed if asked), which must have `shape`."""
        if name not in self.weights:
            raise CheckpointError(f"the weights have no {name!r} (a {self.model} checkpoint of another layout?)")
        value = np.asarray(self.weights[name], "float32")
        value = value.T if transpose else value
        if value.shape != tuple(shape):
            stored, expected = (value.shape[::-1], tuple(shape)[::-1]) if transpose else (value.shape, tuple(shape))
            raise CheckpointError(f"{name} has shape {stored}; config.json describes {expected}")
        return value


def check_config_fields(config, positive, required, model):
    """`positive` fields must be integers above 0; each `required` field, when present, its value."""
    for field in positive:
        if not isinstance(config.get(field), int) or isinstance(config.get(field), bool) or config[field] <= 0:
            raise CheckpointError(f"config.json: {field} must be a positive integer. Received: {config.get(field)!r}")
    for field, value in required.items():
        if field in config and config[field] != value:
            raise CheckpointError(f"config.json: {field}={config[field]!r} is not supported (this project computes "
                                  f"{model} models with {field}={value!r})")  # fmt: skip


def check_activation(config, field, default, activations):
    """The Keras activation of `config[field]` (`default` when absent), one of `activations`' keys."""
    activation = config.get(field, default)
    if activation not in activations:
        raise CheckpointError(
            f"config.json: {field}={activation!r} is not supported (supported: {sorted(activations)})"
        )
    return activations[activation]


def _attention(weights, prefix, attention, d):
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("output", "out_proj")):
        layer = attention.output_dense if ours == "output" else getattr(attention, f"{ours}_dense")
        layer.kernel.assign(weights.get(f"{prefix}.{theirs}.weight", (d, d), transpose=True))
        layer.bias.assign(weights.get(f"{prefix}.{theirs}.bias", (d,)))


def _norm(weights, prefix, norm, d):
    norm.gamma.assign(weights.get(f"{prefix}.weight", (d,)))
    norm.beta.assign(weights.get(f"{prefix}.bias", (d,)))


def _feed_forward(weights, prefix, feed_forward, d, d_ff):
    feed_forward.intermediate_dense.kernel.assign(weights.get(f"{prefix}.fc1.weight", (d, d_ff), transpose=True))
    feed_forward.intermediate_dense.bias.assign(weights.get(f"{prefix}.fc1.bias", (d_ff,)))
    feed_forward.output_dense.kernel.assign(weights.get(f"{prefix}.fc2.weight", (d_ff, d), transpose=True))
    feed_forward.output_dense.bias.assign(weights.get(f"{prefix}.fc2.bias", (d,)))


def model_arguments(config, source_size, target_size, separate, max_sequence_length=None):
    """The `Transformer` keyword arguments of a checked Marian config (sizes in this project's ids)."""
    return dict(
        source_vocabulary_size=source_size,
        target_vocabulary_size=target_size,
        num_layers=config["encoder_layers"],
        hidden_dim=config["d_model"],
        num_heads=config["encoder_attention_heads"],
        intermediate_dim=config["encoder_ffn_dim"],
        dropout=float(config.get("dropout", 0.1)),
        attention_dropout=float(config.get("attention_dropout", 0.0)),
        activation_dropout=float(config.get("activation_dropout", 0.0)),
        activation=ACTIVATIONS[config.get("activation_function", "gelu")],
        max_sequence_length=max_sequence_length or int(config.get("max_position_embeddings", 512)),
        position="sinusoidal",
        position_layout="concatenated",
        normalize_first=False,
        layer_norm_epsilon=1e-5,
        output_bias=True,
        share_embeddings=not separate,
        tie_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


def build_model(directory, config, tokenizers, separate, max_sequence_length=None):
    """The `Transformer` holding the checkpoint's weights, in this project's ids."""
    from keras_transformer.models.transformer import Transformer

    source, target = tokenizers
    weights = CheckpointWeights(read_weights(directory), "Marian", lambda name: name.removeprefix("model."))
    arguments = model_arguments(config, source.vocabulary_size, target.vocabulary_size, separate, max_sequence_length)
    model = Transformer(**arguments)
    d, d_ff = arguments["hidden_dim"], arguments["intermediate_dim"]
    source_rows, target_rows = len(source.vocabulary), len(target.vocabulary)
    if separate:
        encoder_matrix = weights.get("encoder.embed_tokens.weight", (source_rows, d))
        decoder_matrix = weights.get("decoder.embed_tokens.weight", (target_rows, d))
    else:
        name = next((n for n in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
                     if weights.has(n)), "shared.weight")  # fmt: skip
        encoder_matrix = decoder_matrix = weights.get(name, (source_rows, d))
    model.encoder_embedding.token_embedding.embeddings.assign(encoder_matrix[source.order])
    output = model.decoder_embedding.token_embedding
    output.embeddings.assign(decoder_matrix[target.order])
    if not arguments["tie_embeddings"]:
        output.reverse_embeddings.assign(weights.get("lm_head.weight", (target_rows, d))[target.order].T)
    bias = weights.get("final_logits_bias", (1, target_rows))[0] if weights.has("final_logits_bias") \
        else np.zeros(target_rows, "float32")  # fmt: skip
    # Decoding never outputs the padding or start ids (`decoding.greedy.never_output`), which is what OPUS-MT's
    # `bad_words_ids: [[pad]]` asks.
    output.bias.assign(bias[target.order])
    for i, layer in enumerate(model.encoder.transformer_layers):
        prefix = f"encoder.layers.{i}"
        _attention(weights, f"{prefix}.self_attn", layer.self_attention, d)
        _norm(weights, f"{prefix}.self_attn_layer_norm", layer.self_attention_residual.layer_norm, d)
        _feed_forward(weights, prefix, layer.feed_forward, d, d_ff)
        _norm(weights, f"{prefix}.final_layer_norm", layer.feed_forward_residual.layer_norm, d)
    for i, layer in enumerate(model.decoder.transformer_layers):
        prefix = f"decoder.layers.{i}"
        _attention(weights, f"{prefix}.self_attn", layer.self_attention, d)
        _norm(weights, f"{prefix}.self_attn_layer_norm", layer.self_attention_residual.layer_norm, d)
        _attention(weights, f"{prefix}.encoder_attn", layer.cross_attention_layer, d)
        _norm(weights, f"{prefix}.encoder_attn_layer_norm", layer.cross_attention_residual.layer_norm, d)
        _feed_forward(weights, prefix, layer.feed_forward, d, d_ff)
        _norm(weights, f"{prefix}.final_layer_norm", layer.feed_forward_residual.layer_norm, d)
    return model


def marian_tensors(model, source_ours, target_ours):
    """The Marian (transformers) tensors of a `Transformer`: `{name: float32 array}`, the importer's mapping reversed.

    Args:
        model: a post-norm, sinusoidal `Transformer`.
        source_ours, target_ours: for each Marian id, this model's id of the
            same piece (Marian's pad: the start id).

    A model with the paper's interleaved sinusoid is carried over by
    permuting its hidden dimensions (every even one, then every odd one), so
    Marian's `[sin | cos]` layout meets the same weights: LayerNorm and every
    projection commute with the permutation. With `zero_start_embedding`
    the start row is written as zeros, the embedding the model starts from.
    """
    config = model.get_config()
    d = model.hidden_dim
    shared = bool(config["share_embeddings"])
    # Marian hidden dimension j is this model's dimension `order[j]`: the identity, or for the paper's interleaved
    # sinusoid, every even dimension (the sines) then every odd one (the cosines).
    order = np.arange(d) if config["position_layout"] == "concatenated" else np.concatenate(
        [np.arange(0, d, 2), np.arange(1, d, 2)])  # fmt: skip
    tensors = {}

    def put(name, value):
        tensors[name] = np.ascontiguousarray(value, dtype="float32")

    def embedding(layer, ours):
        rows = np.asarray(layer.token_embedding.embeddings)[ours][:, order]
        if config.get("zero_start_embedding"):  # the start id embeds to zeros: Marian's pad row, where it starts
            rows[ours == START_ID] = 0.0
        return rows

    output = model.decoder_embedding.token_embedding
    if shared:
        put("model.shared.weight", embedding(model.encoder_embedding, source_ours))
    else:
        put("model.encoder.embed_tokens.weight", embedding(model.encoder_embedding, np.where(
            source_ours == START_ID, PAD_ID, source_ours)))  # the source side's <pad>: our padding row  # fmt: skip
        put("model.decoder.embed_tokens.weight", embedding(model.decoder_embedding, target_ours))
    if not config["tie_embeddings"]:
        put("lm_head.weight", np.asarray(output.reverse_embeddings)[order][:, target_ours].T)
    bias = np.asarray(output.bias)[target_ours] if output.output_bias else np.zeros(len(target_ours))
    put("final_logits_bias", bias[None, :])

    def dense(prefix, layer, rows=None, columns=None):
        kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
        if rows is not None:
            kernel = kernel[rows]
        if columns is not None:
            kernel, bias = kernel[:, columns], bias[columns]
        put(f"{prefix}.weight", kernel.T)
        put(f"{prefix}.bias", bias)

    def attention(prefix, layer):
        for theirs, ours in (("q_proj", layer.query_dense), ("k_proj", layer.key_dense), ("v_proj", layer.value_dense)):
            dense(f"{prefix}.{theirs}", ours, rows=order)
        dense(f"{prefix}.out_proj", layer.output_dense, columns=order)

    def norm(prefix, layer):
        put(f"{prefix}.weight", np.asarray(layer.gamma)[order])
        put(f"{prefix}.bias", np.asarray(layer.beta)[order])

    def feed_forward(prefix, layer):
        dense(f"{prefix}.fc1", layer.intermediate_dense, rows=order)
        dense(f"{prefix}.fc2", layer.output_dense, columns=order)

    for i, layer in enumerate(model.encoder.transformer_layers):
        prefix = f"model.encoder.layers.{i}"
        attention(f"{prefix}.self_attn", layer.self_attention)
        norm(f"{prefix}.self_attn_layer_norm", layer.self_attention_residual.layer_norm)
        feed_forward(prefix, layer.feed_forward)
        norm(f"{prefix}.final_layer_norm", layer.feed_forward_residual.layer_norm)
    for i, layer in enumerate(model.decoder.transformer_layers):
        prefix = f"model.decoder.layers.{i}"
        attention(f"{prefix}.self_attn", layer.self_attention)
        norm(f"{prefix}.self_attn_layer_norm", layer.self_attention_residual.layer_norm)
        attention(f"{prefix}.encoder_attn", layer.cross_attention_layer)
        norm(f"{prefix}.encoder_attn_layer_norm", layer.cross_attention_residual.layer_norm)
        feed_forward(prefix, layer.feed_forward)
        norm(f"{prefix}.final_layer_norm", layer.feed_forward_residual.layer_norm)
    return tensors


def import_marian(checkpoint, out, name, max_sequence_length=None):
    """Write the Marian checkpoint directory `checkpoint` as the translation run `out/name`.

    The run holds what a trained run holds for translation, export and
    fine-tuning (`config.json`, `model.keras`, `tokenizers/`), so
    `Translator.from_run`, `keras_transformer.translate`, the attention
    pictures, `python -m export`, `export.verify`, `export.run_tflite` and
    `train.py --init-from` take it as they take a trained run. Everything is
    read and checked before anything is written; the files are written
    atomically, `config.json` last, and a failed import leaves no run.

    Args:
        checkpoint: a Hugging Face Marian directory (`config.json`,
            `model.safetensors` or `pytorch_model.bin`, `source.spm`,
            `target.spm`, `vocab.json`).
        out: the folder of runs.
        name: the run's name, a folder inside `out`.
        max_sequence_length: the longest source or target the run takes
            (default and at most: the checkpoint's `max_position_embeddings`);
            exported models are sized for it.

    Returns:
        The run's path.

    Raises:
        CheckpointError: a missing or corrupt file, or a config this project
            cannot compute exactly (one line naming the field and value).
        FileExistsError: `out/name` already holds a run.
    """
    check_destination(checkpoint, out, name, "a Hugging Face Marian checkpoint's folder")
    config = read_config(checkpoint)
    limit = int(config.get("max_position_embeddings", 512))
    check_max_length(max_sequence_length, limit)
    tokenizers, separate = read_tokenizers(checkpoint, config)
    model = build_model(checkpoint, config, tokenizers, separate, max_sequence_length)
    model_config = {key: value for key, value in model.get_config().items()
                    if key in model_arguments(config, 1, 1, separate)}  # fmt: skip
    task = {
        "name": "marian",
        "family": "translate",
        "imported": {"format": "marian", "from": os.path.abspath(checkpoint), "config": config},
    }
    return write_run(out, name, model, tokenizers, model_config, task)


def check_destination(checkpoint, out, name, what):
    """Refuse a run name that is not a plain name, a checkpoint that is not a directory, an `out` that is a file."""
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", "..") or os.path.isabs(name):
        raise ValueError(f"the run's name must be a plain name (a folder inside the output folder). Received: {name!r}")
    if not os.path.isdir(checkpoint):
        raise CheckpointError(f"{checkpoint} is not a directory ({what})")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out} is a file, not a directory")


def check_max_length(max_sequence_length, limit):
    """`max_sequence_length` must be `None` or an integer in `[1, limit]` (the checkpoint's positions)."""
    if max_sequence_length is not None and (
        isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, int)
        or not 1 <= max_sequence_length <= limit
    ):  # fmt: skip
        raise ValueError(f"`max_sequence_length` must be an integer in [1, {limit}] (the checkpoint's "
                         f"max_position_embeddings). Received: {max_sequence_length!r}")  # fmt: skip


def write_run(out, name, model, tokenizers, model_config, task):
    """Write an imported model as the finished run `out/name`; returns its path.

    The files are written atomically, `config.json` last; a failed write
    leaves no run. `model_config`: the model's arguments the run records;
    `task`: the run's task record (with `"imported"`).
    """
    import shutil

    import keras

    from keras_transformer.tasks.trainer import open_run, release_run

    record = {"model": model_config, "task": task, "training": {}, "backend": keras.backend.backend()}
    path = os.path.join(out, name)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path} already exists; import under another name")
    os.makedirs(out, exist_ok=True)
    run = open_run(path)
    try:
        run.save_tokenizers(*tokenizers)
        run.save_model(model)
        run.write_json(run.config_file, record)
        # A finished run, as training leaves one: train.py refuses its name rather than starting over in it.
        run.write_json(run.evaluation_file, {"imported": task["imported"]["from"]})
    except BaseException:
        if run.created:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    finally:
        release_run(run)
    return run.path
