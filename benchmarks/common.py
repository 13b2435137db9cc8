"""What the training benchmarks share: FLOP counts, keras-hub's model, fixed batches, a timer.

Imports keras, keras-hub and NumPy only (no TensorFlow), so the JAX-only GPU
benchmark uses it too.
"""

import time

import keras
import keras_hub
import numpy as np

from keras_transformer.vocabulary import START_ID


def training_flops(config, batch_size, source_length, target_length):
    """Matmul and attention FLOPs of one training step (3x forward) on the padded batch.

    `config` holds `hidden_dim`, `intermediate_dim`, `num_layers` (each of the
    encoder and the decoder) and `vocabulary_size` (the output projection).
    """
    d, f, n, v = config["hidden_dim"], config["intermediate_dim"], config["num_layers"], config["vocabulary_size"]
    s, t = source_length, target_length
    encoder = n * s * (2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * s * d)  # projections, FFN, QK^T and AV
    decoder = n * t * (2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * t * d)  # self-attention block and FFN
    decoder += n * (t * 2 * 2 * d * d + s * 2 * 2 * d * d + t * 2 * 2 * s * d)  # cross-attention: Q/O, K/V, scores
    output = t * 2 * d * v
    return 3 * batch_size * (encoder + decoder + output)


def keras_hub_model(vocabulary_size, num_layers, hidden_dim, num_heads, intermediate_dim, dropout, max_length):
    """The same seq2seq Transformer from keras-hub's layers (learned positions, untied output)."""
    source = keras.Input((None,), dtype="int32", name="encoder_token_ids")
    target = keras.Input((None,), dtype="int32", name="decoder_token_ids")
    x = keras_hub.layers.TokenAndPositionEmbedding(vocabulary_size, max_length, hidden_dim, mask_zero=True)(source)
    for _ in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads, dropout=dropout)(x)
    y = keras_hub.layers.TokenAndPositionEmbedding(vocabulary_size, max_length, hidden_dim, mask_zero=True)(target)
    for _ in range(num_layers):
        y = keras_hub.layers.TransformerDecoder(intermediate_dim, num_heads, dropout=dropout)(y, x)
    logits = keras.layers.Dense(vocabulary_size)(y)
    return keras.Model({"encoder_token_ids": source, "decoder_token_ids": target}, logits)


class TrainingTimer(keras.callbacks.Callback):
    """Seconds from the start of training to the end of its last step, measured inside `fit`."""

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def alternate_fits(models, fit, repeats, between):
    """Time `fit(model, callbacks)` of each of `models` A/B for `repeats` rounds, after one warm-up fit each.

    Each fit is timed inside `fit` by a `TrainingTimer`; `between()` runs
    once before the first round and after each (a reference measurement
    interleaved with the models'). Each round starts one model further on,
    so no model always runs first after `between()`: in a fixed order, two
    models that differ only in the optimizer's update kernel measured 0.93x
    and 0.95x (the first after the reference matmul against the third), and
    1.006x with the order rotated. Returns `{name: [seconds per round]}`.
    """
    for model in models.values():  # warm-up: tracing or compilation, allocation, optimizer slots
        fit(model, [])
    seconds = {name: [] for name in models}
    names = list(models)
    between()
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model = models[name]
            timer = TrainingTimer()
            fit(model, [timer])
            seconds[name].append(timer.seconds)
        between()
    return seconds


def synthetic_batches(vocabulary_size, batch_size, source_length, target_length, count, seed=0, min_fraction=1 / 3):
    """`count` fixed batches of random ids, each row padded after a random length.

    Row lengths are uniform in `[min_fraction * length, length]`.
    """
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        source = rng.integers(4, vocabulary_size, size=(batch_size, source_length)).astype("int32")
        target = rng.integers(4, vocabulary_size, size=(batch_size, target_length + 1)).astype("int32")
        for ids, length in ((source, source_length), (target, target_length + 1)):
            lengths = rng.integers(int(length * min_fraction), length + 1, size=batch_size)
            ids[np.arange(length)[None] >= lengths[:, None]] = 0
        target[:, 0] = START_ID
        batches.append(({"encoder_token_ids": source, "decoder_token_ids": target[:, :-1]}, target[:, 1:]))
    return batches
