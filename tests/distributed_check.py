"""Run by tests/test_distribution.py in a fresh process: one device vs two, same global batches.

    KERAS_BACKEND=tensorflow python tests/distributed_check.py
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/distributed_check.py

Prints one JSON line: the largest weight difference, the losses of both, the strategy.

    KERAS_BACKEND=tensorflow python tests/distributed_check.py families

does the same for every model family the way a user writes it: their own
`compile` (a plain Keras optimizer and loss) and `model.fit` on a `tf.data`
stream or on arrays, under one `tf.distribute.MirroredStrategy` (one per
process: TensorFlow's collectives clash between two, tensorflow/tensorflow#62790).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.distribution import build_under_strategy, configure_cpu_devices, strategy_scope  # noqa: E402
from keras_transformer.optimizers import accumulating_adam  # noqa: E402

CONFIG = dict(
    source_vocabulary_size=40, target_vocabulary_size=40, num_layers=1, hidden_dim=16, num_heads=2,
    intermediate_dim=32, dropout=0.0, max_sequence_length=12,
)  # fmt: skip


def batches(rows=32, seed=0):
    """Padded rows; the two halves of every batch of 8 hold different numbers of real tokens."""
    rng = np.random.default_rng(seed)
    source = rng.integers(4, 40, size=(rows, 9)).astype("int32")
    target = rng.integers(4, 40, size=(rows, 8)).astype("int32")
    for row in range(rows):
        target[row, (2 if row % 8 < 4 else 6) + row % 2 :] = 0  # short rows first, long rows second
        source[row, 5 + row % 3 :] = 0
    decoder = np.concatenate([np.full((rows, 1), kt.START_ID, "int32"), target[:, :-1]], 1)
    decoder[target == 0] = 0
    decoder[:, 0] = kt.START_ID
    return {"encoder_token_ids": source, "decoder_token_ids": decoder}, target


def trained(weights, x, y):
    model = kt.Transformer(**CONFIG)
    model({key: value[:2] for key, value in x.items()})
    model.set_weights(weights)
    schedule = kt.schedules.TransformerSchedule(16, warmup_steps=3)
    model.compile(optimizer=accumulating_adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-3), metrics=[])
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        build_under_strategy(model, {"x": data})
        history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    else:
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return model.get_weights(), history.history["loss"]


def main():
    configure_cpu_devices(2)
    keras.utils.set_random_seed(0)
    x, y = batches()
    reference = kt.Transformer(**CONFIG)
    reference({key: value[:2] for key, value in x.items()})
    weights = reference.get_weights()
    one, one_loss = trained(weights, x, y)
    with strategy_scope("mirrored") as description:
        two, two_loss = trained(weights, x, y)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(one, weights))
    print(json.dumps({"strategy": description, "max_weight_difference": difference, "moved": moved,
                      "loss_one_device": one_loss, "loss_two_devices": two_loss}))


FAMILY_ARCHITECTURE = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0,
                           max_sequence_length=12)  # fmt: skip


def family_model(family, ids):
    """A model of `family` and its `(x, y)` on the padded `ids`."""
    if family == "translate":
        model = kt.Transformer(source_vocabulary_size=40, target_vocabulary_size=40, **FAMILY_ARCHITECTURE)
        return model, {"encoder_token_ids": ids, "decoder_token_ids": ids}, ids
    if family == "lm":
        return kt.TransformerLM(vocabulary_size=40, **FAMILY_ARCHITECTURE), ids, ids
    backbone = kt.TransformerEncoderModel(vocabulary_size=40, **FAMILY_ARCHITECTURE)
    if family == "classify":
        return kt.TransformerClassifier(backbone, num_classes=3, dropout=0.0), ids, ids[:, 0] % 3
    return kt.TransformerTagger(backbone, num_tags=5, dropout=0.0), ids, ids % 5


def fit_family(family, ids, weights, arrays):
    import tensorflow as tf

    model, x, y = family_model(family, ids)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if arrays:
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    else:
        history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0, shuffle=False)
    return model.get_weights(), history.history["loss"]


def families():
    import tensorflow as tf

    configure_cpu_devices(2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    ids = np.random.default_rng(0).integers(4, 40, size=(32, 10)).astype("int32")
    ids[:16, 4:] = 0  # the two halves of each global batch of 8 hold different numbers of tokens
    ids[16:, 8:] = 0
    report = {}
    for number, family in enumerate(["translate", "lm", "classify", "tag"]):
        keras.utils.set_random_seed(number)
        weights = family_model(family, ids)[0].get_weights()
        arrays = number % 2 == 1  # translate and classify from tf.data, lm and tag from arrays
        one, one_loss = fit_family(family, ids, weights, arrays)
        with strategy.scope():
            two, two_loss = fit_family(family, ids, weights, arrays)
        report[family] = {
            "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
            "moved": max(float(np.abs(a - b).max()) for a, b in zip(one, weights)),
            "loss_one_device": one_loss, "loss_two_devices": two_loss,
        }  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    families() if sys.argv[1:] == ["families"] else main()
