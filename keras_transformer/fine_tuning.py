"""Freezing the lower layers of a pre-trained model before fine-tuning it."""


def _body(model):
    """The embedding and layers of `model` (a task model's backbone, or the model itself)."""
    body = getattr(model, "backbone", model)
    if not hasattr(body, "transformer_layers") or not hasattr(body, "embedding"):
        raise ValueError(
            "`freeze` works on a `TransformerEncoderModel`, `TransformerLM` or a task model with a "
            f"`backbone`. Received: {type(model).__name__}"
        )
    return body


def freeze(model, up_to=None):
    """Freeze the embedding and the lowest `up_to` Transformer layers.

    Frozen weights are left out of `model.trainable_variables`, so `fit`
    leaves them bit-identical; the layers above, the final LayerNorm of a
    pre-norm stack and the task head keep training. Call it before
    `compile` (Keras collects the trainable weights when it builds the
    train step). Dropout in frozen layers still follows `training`. A saved
    model does not record what was frozen: after loading one, freeze again
    before compiling (or load with `compile=False`: its optimizer state
    covers only the layers that were trainable).

    Args:
        model: a task model with a `backbone` (`TransformerClassifier`,
            `TransformerTagger`, `TransformerMaskedLM`), a
            `TransformerEncoderModel` or a `TransformerLM`.
        up_to: how many layers, from the bottom, to freeze with the
            embedding: 0 freezes nothing, `None` the whole stack (with a
            pre-norm stack's final LayerNorm; a `TransformerLM`'s tied output
            layer is its embedding, frozen with it).

    Returns:
        The names of the frozen layers, bottom first.

    Example:
    >>> backbone = keras_transformer.models.TransformerEncoderModel.from_preset("tiny", vocabulary_size=100)
    >>> classifier = keras_transformer.TransformerClassifier(backbone, num_classes=2)
    >>> keras_transformer.freeze(classifier, up_to=1)
    ['embedding', 'layer_0']
    """
    body = _body(model)
    layers = body.transformer_layers
    whole = up_to is None
    up_to = len(layers) if whole else up_to
    if isinstance(up_to, bool) or not isinstance(up_to, int) or not 0 <= up_to <= len(layers):
        raise ValueError(f"`up_to` must be an int in [0, {len(layers)}] (the layer count). Received: up_to={up_to}")
    unfreeze(model)
    frozen = ([body.embedding] if up_to else []) + list(layers[:up_to])
    stack = getattr(body, "encoder", None) or getattr(body, "decoder", None)
    if up_to == len(layers) and stack is not None and stack.final_layer_norm is not None:
        frozen.append(stack.final_layer_norm)
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in frozen]


def unfreeze(model):
    """Make every layer of `model` trainable again (undoes `freeze`)."""
    _body(model)
    model.trainable = True
    for layer in model._flatten_layers(include_self=False):
        layer.trainable = True
    if getattr(model, "unused_pooler", False):  # a head that does not read it: it would get no gradient
        model.backbone.pooler.trainable = False


def frozen_layers(model):
    """Names of the layers of `model`'s body that are not trainable, bottom first."""
    body = _body(model)
    candidates = [body.embedding, *body.transformer_layers]
    return [layer.name for layer in candidates if not layer.trainable]
