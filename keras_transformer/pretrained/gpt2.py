"""GPT-2 checkpoints in the Hugging Face layout, read into a language-model run.

GPT-2 is this project's decoder-only `TransformerLM` with options: pre-norm
layers and a final LayerNorm (`normalize_first=True`), learned absolute
positions, token embeddings not scaled, the tanh approximation of GELU
(`gelu_approximate`), the output layer tied to the token embedding.
`Conv1D` weights are stored `(in, out)`, the layout of a Keras kernel; the
attention's fused `c_attn` splits into query, key and value. GPT-2's
`<|endoftext|>` is this project's start and end id, and ids for padding and
unknown are added (`data.tokenizers.gpt2_order`); the unknown id gets a
fixed output bias of `UNKNOWN_LOGIT_BIAS`, so it is never predicted (the
byte-level BPE never produces it). The tokenizer is the checkpoint's
`vocab.json` and `merges.txt` (`data.tokenizers.Gpt2Tokenizer`). Reading
needs neither torch nor transformers.
"""

import os

import numpy as np

from keras_transformer.pretrained.marian import (
    CheckpointError, CheckpointWeights, _read_json, check_activation, check_config_fields, check_destination,
    check_max_length, read_weights, write_run,
)  # fmt: skip
from keras_transformer.vocabulary import UNKNOWN_ID

ACTIVATIONS = {"gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate", "gelu": "gelu",
               "relu": "relu", "silu": "silu", "swish": "silu"}  # fmt: skip
# Config fields that, set otherwise, describe a model this project would compute differently.
REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False,
            "tie_word_embeddings": True}  # fmt: skip
UNKNOWN_LOGIT_BIAS = -1e4  # float16-safe, far below any logit


def read_config(directory):
    """The checkpoint's `config.json`, checked to be a GPT-2 model this project computes exactly."""
    config = _read_json(os.path.join(directory, "config.json"), "not a Hugging Face model directory")
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        raise CheckpointError(f"{directory}/config.json does not describe a GPT-2 model (model_type \"gpt2\")")
    check_config_fields(config, ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions"), REQUIRED, "GPT-2")
    check_activation(config, "activation_function", "gelu_new", ACTIVATIONS)
    if config["n_embd"] % config["n_head"]:
        raise CheckpointError(f"config.json: n_embd={config['n_embd']} is not divisible by n_head={config['n_head']}")
    return config


def read_tokenizer(directory, config):
    """The checkpoint's byte-level BPE (`vocab.json`, `merges.txt`) as a `Gpt2Tokenizer`."""
    from keras_transformer.data.tokenizers import Gpt2Tokenizer

    vocabulary = _read_json(os.path.join(directory, "vocab.json"), "the BPE vocabulary")
    if not isinstance(vocabulary, dict) or not all(isinstance(i, int) for i in vocabulary.values()):
        raise CheckpointError(f"{directory}/vocab.json is not a vocabulary ({{piece: id}})")
    if len(vocabulary) != config["vocab_size"]:
        raise CheckpointError(f"{directory}/vocab.json has {len(vocabulary)} pieces; config.json's vocab_size is "
                              f"{config['vocab_size']}")  # fmt: skip
    path = os.path.join(directory, "merges.txt")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the BPE merge rules") from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not UTF-8 text (corrupt?): {error}") from None
    merges = [line for line in lines if line and not line.startswith("#version")]
    broken = next((line for line in merges if len(line.split(" ")) != 2), None)
    if broken is not None:
        raise CheckpointError(f"{path}: {broken!r} is not a merge rule (two pieces and a space)")
    try:
        return Gpt2Tokenizer(vocabulary, merges)
    except ValueError as error:
        raise CheckpointError(f"{directory}/vocab.json: {error}") from None


def model_arguments(config, vocabulary_size, max_sequence_length=None):
    """The `TransformerLM` keyword arguments of a checked GPT-2 config."""
    d = config["n_embd"]
    return dict(
        vocabulary_size=vocabulary_size,
        tie_embeddings=True,
        num_layers=config["n_layer"],
        hidden_dim=d,
        num_heads=config["n_head"],
        intermediate_dim=config.get("n_inner") or 4 * d,
        dropout=float(config.get("resid_pdrop", 0.1)),
        attention_dropout=float(config.get("attn_pdrop", 0.1)),
        activation=ACTIVATIONS[config.get("activation_function", "gelu_new")],
        layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-5)),
        max_sequence_length=max_sequence_length or config["n_positions"],
        position="learned",
        normalize_first=True,
        scale_embeddings=False,
        output_bias=True,
    )


def build_model(directory, config, order, max_sequence_length=None):
    """The `TransformerLM` holding the checkpoint's weights, in this project's ids (`order`, see `gpt2_order`)."""
    from keras_transformer.models import TransformerLM

    weights = CheckpointWeights(read_weights(directory), "GPT-2", lambda name: name.removeprefix("transformer."))
    arguments = model_arguments(config, len(order), max_sequence_length)
    model = TransformerLM(**arguments)
    d, d_ff, rows = arguments["hidden_dim"], arguments["intermediate_dim"], config["vocab_size"]
    words = weights.get("wte.weight", (rows, d))
    if weights.has("lm_head.weight") and not np.array_equal(weights.get("lm_head.weight", (rows, d)), words):
        raise CheckpointError("lm_head.weight differs from wte.weight; this project's GPT-2 output layer is the token "
                              "embedding (tied)")  # fmt: skip
    token = model.embedding.token_embedding
    token.embeddings.assign(np.where(order[:, None] >= 0, words[np.maximum(order, 0)], 0.0).astype("float32"))
    bias = np.zeros(len(order), "float32")
    bias[UNKNOWN_ID] = UNKNOWN_LOGIT_BIAS
    token.bias.assign(bias)
    positions = weights.get("wpe.weight", (config["n_positions"], d))
    model.embedding.position_encoding.position_embeddings.assign(positions[: arguments["max_sequence_length"]])

    def norm(prefix, layer):
        layer.gamma.assign(weights.get(f"{prefix}.weight", (d,)))
        layer.beta.assign(weights.get(f"{prefix}.bias", (d,)))

    def dense(prefix, layer, inputs, units):
        layer.kernel.assign(weights.get(f"{prefix}.weight", (inputs, units)))  # Conv1D: (in, out), as Keras
        layer.bias.assign(weights.get(f"{prefix}.bias", (units,)))

    for i, layer in enumerate(model.decoder.transformer_layers):
        prefix = f"h.{i}"
        norm(f"{prefix}.ln_1", layer.self_attention_residual.layer_norm)
        attention = layer.self_attention
        kernel = weights.get(f"{prefix}.attn.c_attn.weight", (d, 3 * d))
        bias = weights.get(f"{prefix}.attn.c_attn.bias", (3 * d,))
        for part, projection in enumerate((attention.query_dense, attention.key_dense, attention.value_dense)):
            projection.kernel.assign(kernel[:, part * d : (part + 1) * d])
            projection.bias.assign(bias[part * d : (part + 1) * d])
        dense(f"{prefix}.attn.c_proj", attention.output_dense, d, d)
        norm(f"{prefix}.ln_2", layer.feed_forward_residual.layer_norm)
        dense(f"{prefix}.mlp.c_fc", layer.feed_forward.intermediate_dense, d, d_ff)
        dense(f"{prefix}.mlp.c_proj", layer.feed_forward.output_dense, d_ff, d)
    norm("ln_f", model.decoder.final_layer_norm)
    return model


def import_gpt2(checkpoint, out, name, max_sequence_length=None):
    """Write the GPT-2 checkpoint directory `checkpoint` as the language-model run `out/name`.

    The run generates, exports (SavedModel, TFLite `generate` and `logits`)
    and fine-tunes (`train.py --task lm --init-from`) as a trained `lm` run
    does. Checked and written as `import_marian` writes runs.

    Args:
        checkpoint: a Hugging Face GPT-2 directory (`config.json`,
            `model.safetensors` or `pytorch_model.bin`, `vocab.json`,
            `merges.txt`).
        out: the folder of runs.
        name: the run's name, a folder inside `out`.
        max_sequence_length: the longest sequence (prompt and continuation)
            the run takes (default and at most: the checkpoint's `n_positions`).

    Returns:
        The run's path.
    """
    check_destination(checkpoint, out, name, "a Hugging Face GPT-2 checkpoint's folder")
    config = read_config(checkpoint)
    check_max_length(max_sequence_length, config["n_positions"])
    tokenizer = read_tokenizer(checkpoint, config)
    model = build_model(checkpoint, config, tokenizer.order, max_sequence_length)
    task = {"name": "gpt2", "family": "lm",
            "imported": {"format": "gpt2", "from": os.path.abspath(checkpoint), "config": config}}  # fmt: skip
    model_config = {key: value for key, value in model.get_config().items() if key in model_arguments(config, 1)}
    return write_run(out, name, model, (tokenizer, tokenizer), model_config, task)
