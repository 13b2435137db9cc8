"""Argument checks and sublayer settings shared by every model family."""

import keras

from keras_transformer.layers.sinusoidal_position_encoding import LAYOUTS
from keras_transformer.layers.transformer_embedding import TransformerEmbedding
from keras_transformer.checks import check_bool, check_non_negative_int, check_positive_int, check_rate

POSITIONS = ("sinusoidal", "learned", "relative", "rotary")
DROPOUT_RATES = ("dropout", "attention_dropout", "activation_dropout")  # may change when fine-tuning

# The architecture arguments every model takes, with their defaults (the paper's base model).
ARCHITECTURE = dict(
    num_layers=6,
    hidden_dim=512,
    num_heads=8,
    intermediate_dim=2048,
    dropout=0.1,
    max_sequence_length=256,
    position="sinusoidal",
    normalize_first=False,
    attention_dropout=0.0,
    activation_dropout=0.0,
    activation="relu",
    layer_norm_epsilon=1e-5,
    max_relative_position=16,
    position_layout="interleaved",
    output_bias=False,
    scale_embeddings=True,
    embedding_norm=False,
    segment_vocabulary_size=0,
)


def check_architecture(config, **vocabulary_sizes):
    """Raise `ValueError` for sizes, rates or choices no model can be built with."""
    for name in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "max_sequence_length"):
        check_positive_int(config[name], name)
    check_positive_int(config["max_relative_position"], "max_relative_position")
    for name, value in vocabulary_sizes.items():
        check_positive_int(value, name)
    for name in DROPOUT_RATES:
        check_rate(config[name], name)
    if config["hidden_dim"] % config["num_heads"]:
        raise ValueError(
            "`hidden_dim` (d_model) must be divisible by `num_heads` (h). "
            f"Received: hidden_dim={config['hidden_dim']}, num_heads={config['num_heads']}"
        )
    if config["position"] not in POSITIONS:
        raise ValueError(f"`position` must be one of {POSITIONS}. Received: position={config['position']!r}")
    if config["position_layout"] not in LAYOUTS:
        raise ValueError(
            f"`position_layout` must be one of {LAYOUTS}. Received: position_layout={config['position_layout']!r}"
        )
    check_bool(config["output_bias"], "output_bias")
    check_bool(config["scale_embeddings"], "scale_embeddings")
    check_bool(config["embedding_norm"], "embedding_norm")
    check_non_negative_int(config["segment_vocabulary_size"], "segment_vocabulary_size")


def make_embedding(config, vocabulary_size, tie_weights, dtype, name, output_bias=None, zero_start=False):
    """The token embedding (`* sqrt(d_model)` unless not `scale_embeddings`), positions, norm, dropout of a stack.

    `output_bias` defaults to the config's; an embedding never used as the
    output layer (a separate source embedding) passes `False`.
    """
    position = config["position"]
    return TransformerEmbedding(
        vocabulary_size,
        config["hidden_dim"],
        config["max_sequence_length"],
        position=position if position in ("sinusoidal", "learned") else "none",
        dropout=config["dropout"],
        tie_weights=tie_weights,
        position_layout=config["position_layout"],
        output_bias=config["output_bias"] if output_bias is None else output_bias,
        zero_start=zero_start,
        scale=config["scale_embeddings"],
        normalize=config["embedding_norm"],
        layer_norm_epsilon=config["layer_norm_epsilon"],
        segment_vocabulary_size=config["segment_vocabulary_size"],
        dtype=dtype,
        name=name,
    )


def stack_arguments(config, dtype):
    """Keyword arguments of `TransformerEncoder`/`TransformerDecoder` for `config`."""
    return dict(
        num_layers=config["num_layers"],
        intermediate_dim=config["intermediate_dim"],
        num_heads=config["num_heads"],
        dropout=config["dropout"],
        attention_dropout=config["attention_dropout"],
        activation_dropout=config["activation_dropout"],
        activation=config["activation"],
        layer_norm_epsilon=config["layer_norm_epsilon"],
        normalize_first=config["normalize_first"],
        max_relative_position=config["max_relative_position"] if config["position"] == "relative" else None,
        use_rotary_embedding=config["position"] == "rotary",
        dtype=dtype,
    )


def check_token_ids(name, token_ids, max_sequence_length):
    """Reject what a model cannot mean: wrong rank, float ids, too long."""
    shape = token_ids.shape
    dtype = keras.backend.standardize_dtype(getattr(token_ids, "dtype", "int32"))
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be (batch, length) token ids. Received: shape={tuple(shape)}")
    if "int" not in dtype:
        raise ValueError(f"`{name}` must hold integer token ids. Received: dtype={dtype}")
    if shape[1] is not None and shape[1] > max_sequence_length:
        raise ValueError(
            f"`{name}` has {shape[1]} positions, more than max_sequence_length="
            f"{max_sequence_length}. Truncate the input or build a model with a larger "
            "`max_sequence_length`."
        )


def set_dtype_policy(model, policy):
    """Give `model` and every layer in it the dtype policy `policy` (a name or a `DTypePolicy`).

    For a model trained under mixed precision (`"mixed_bfloat16"`,
    `"mixed_float16"`: float32 variables, half-precision compute), setting
    `"float32"` makes it compute in float32 with the same weights, which is what
    inference and export want; `.keras` files keep the policy set here. Only the
    compute dtype may change: variables are float32 under all three policies.

    Example:
    >>> model = keras_transformer.Transformer.from_preset("tiny", source_vocabulary_size=100,
    ...     target_vocabulary_size=100, dtype="mixed_bfloat16")
    >>> keras_transformer.models.set_dtype_policy(model, "float32")
    >>> model.compute_dtype
    'float32'
    """
    policy = keras.dtype_policies.get(policy)
    for layer in model._flatten_layers(include_self=True, recursive=True):
        variable_dtype = layer.dtype_policy.variable_dtype
        if variable_dtype != policy.variable_dtype:
            raise ValueError(
                f"Layer {layer.name!r} keeps {variable_dtype} variables; the policy {policy.name!r} expects "
                f"{policy.variable_dtype}. Only the compute dtype can be changed on a built model."
            )
        layer.dtype_policy = policy
    return model
