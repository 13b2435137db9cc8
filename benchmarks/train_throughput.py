"""Training throughput: ours vs keras-hub's layers, same architecture, same batches, one run.

    python benchmarks/train_throughput.py [--preset small] [--repeats 5] [--steps 20]
    python benchmarks/train_throughput.py --precision mixed_bfloat16

Both models are the "small" Transformer (vocabulary 8000, d_model 256, 4
heads, d_ff 1024, 3+3 layers, dropout 0.1): ours is `kt.Transformer`; the
other is keras-hub's `TokenAndPositionEmbedding`, `TransformerEncoder` and
`TransformerDecoder` with a `Dense` output layer, assembled the same way.
Both train with the same optimizer (the paper's Adam and warm-up schedule),
the same label-smoothed masked loss and the same fixed synthetic batches
(batch 64, source/target lengths up to 32, padded), through `model.fit`.

After a warm-up, the two alternate A/B for `--repeats` rounds of `--steps`
steps each. A round is timed by a callback from the start of training to
its end, inside `fit`: on this machine `fit` sometimes returned ~10.2 s
after it started however early its last step ended (its teardown waits),
which would otherwise decide the median. Reported per model: median non-pad
target tokens per second, achieved GFLOP/s (training FLOPs of the padded
batch, 3x the forward matmul and attention FLOPs, counted the same way for
both) and the ratio ours / keras-hub; plus a 2048^3 matmul's GFLOP/s in the
compute dtype, measured in the same process, so each figure has a "% of
peak" (and, under mixed precision, the float32 matmul's too).

Ours projects only the real target positions in training
(`ModelBase.train_step`); `--compare-every-position` adds ours projecting
every position, padding included, to the same rounds (before / after).

Both models train with `kt.optimizers.Adam`, whose update on TensorFlow is
one fused kernel per variable; `--compare-keras-adam` adds ours trained with
Keras's element-wise Adam update (the same formula, a dozen ops per
variable) to the same rounds.

`--precision mixed_bfloat16` (or `mixed_float16`) sets Keras's global dtype
policy for both models: bfloat16 compute, float32 variables, loss and
softmax in float32.

Prints one JSON object per measurement, then a table.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transformer as kt  # noqa: E402
from common import alternate_fits, keras_hub_model, synthetic_batches, training_flops  # noqa: E402  (benchmarks/common.py)


class KerasAdamUpdate(kt.optimizers.Adam):
    """`kt.optimizers.Adam` with Keras's element-wise update (what it ran before the fused kernel)."""

    update_step = keras.optimizers.Adam.update_step


def update_milliseconds(optimizer_class, variables, repeats=15):
    """Median ms of one `optimizer.apply` on `variables` alone (random gradients, in a `tf.function`)."""
    optimizer = optimizer_class(1e-4, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    optimizer.build(variables)
    gradients = [tf.random.normal(v.shape) * 1e-3 for v in variables]
    apply = tf.function(lambda grads: optimizer.apply(grads, variables))
    times = []
    for index in range(repeats + 2):
        start = time.perf_counter()
        apply(gradients)
        if index >= 2:  # after tracing
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def matmul_gflops(size=2048, repeats=5, dtype="float32"):
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    tf.matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--source-length", type=int, default=32)
    parser.add_argument("--target-length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="A/B rounds after the warm-up")
    parser.add_argument("--jit-compile", action="store_true", help="compile train steps with XLA")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"], default="float32")
    parser.add_argument("--compare-keras-adam", action="store_true", help="also time ours trained with Keras's "
                        "element-wise Adam update instead of the fused one, in the same A/B rounds")
    parser.add_argument("--compare-every-position", action="store_true", help="also time ours projecting every "
                        "position, padding included (`project_real_tokens = False`), in the same A/B rounds")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(args.precision)
    compute_dtype = keras.config.dtype_policy().compute_dtype

    config = dict(kt.models.PRESETS[args.preset], vocabulary_size=args.vocabulary_size)
    max_length = max(args.source_length, args.target_length)

    def ours_model():
        return kt.Transformer.from_preset(
            args.preset,
            source_vocabulary_size=args.vocabulary_size,
            target_vocabulary_size=args.vocabulary_size,
            max_sequence_length=max_length,
        )

    ours = ours_model()
    hub = keras_hub_model(
        args.vocabulary_size,
        config["num_layers"],
        config["hidden_dim"],
        config["num_heads"],
        config["intermediate_dim"],
        config["dropout"],
        max_length,
    )
    models = {"ours": ours, "keras_hub": hub}
    if args.compare_every_position:
        models["ours_every_position"] = ours_model()
        models["ours_every_position"].project_real_tokens = False
    if args.compare_keras_adam:
        models["ours_keras_adam"] = ours_model()
    for name, model in models.items():
        schedule = kt.schedules.TransformerSchedule(config["hidden_dim"], 4000)
        optimizer = kt.optimizers.transformer_adam(config["hidden_dim"], learning_rate=schedule)
        if name == "ours_keras_adam":
            optimizer = KerasAdamUpdate(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
        model.compile(
            optimizer=optimizer,
            loss=kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
            metrics=[],
            jit_compile=args.jit_compile,
        )
    batches = synthetic_batches(args.vocabulary_size, args.batch_size, args.source_length, args.target_length, args.steps)
    target_tokens = sum(int((y != 0).sum()) for _, y in batches)
    flops = training_flops(config, args.batch_size, args.source_length, args.target_length) * len(batches)

    inputs = {key: np.concatenate([x[key] for x, _ in batches]) for key in batches[0][0]}
    labels = np.concatenate([y for _, y in batches])
    data = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(args.batch_size).cache()
    peak, peak_float32 = [], []

    def matmuls():
        peak.append(matmul_gflops(dtype=compute_dtype))
        peak_float32.append(matmul_gflops() if compute_dtype != "float32" else peak[-1])

    seconds = alternate_fits(
        models, lambda model, callbacks: model.fit(data, epochs=1, verbose=0, callbacks=callbacks), args.repeats, matmuls
    )
    peak_gflops = statistics.median(peak)
    peak_float32_gflops = statistics.median(peak_float32)
    rows = []
    for name, model in models.items():
        median = statistics.median(seconds[name])
        row = {
            "measurement": "train_throughput",
            "model": name,
            "parameters": model.count_params(),
            "target_tokens_per_second": round(target_tokens / median),
            "gflops_per_second": round(flops / median / 1e9, 1),
            "matmul_gflops_per_second": round(peak_gflops, 1),
            "percent_of_matmul": round(100 * flops / median / 1e9 / peak_gflops, 1),
            "seconds_per_step": round(median / len(batches), 4),
            "precision": args.precision,
            "matmul_dtype": compute_dtype,
            "jit_compile": args.jit_compile,
            "preset": args.preset,
            "batch_size": args.batch_size,
        }
        if compute_dtype != "float32":
            row["float32_matmul_gflops_per_second"] = round(peak_float32_gflops, 1)
            row["percent_of_float32_matmul"] = round(100 * flops / median / 1e9 / peak_float32_gflops, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    ratio = rows[0]["target_tokens_per_second"] / rows[1]["target_tokens_per_second"]
    print(json.dumps({"measurement": "train_throughput_ratio", "ours_over_keras_hub": round(ratio, 3)}))
    by_name = {row["model"]: row["target_tokens_per_second"] for row in rows}
    if args.compare_every_position:
        gain = by_name["ours"] / by_name["ours_every_position"]
        print(json.dumps({"measurement": "real_token_projection", "ours_over_ours_every_position": round(gain, 3)}))
    if args.compare_keras_adam:
        gain = by_name["ours"] / by_name["ours_keras_adam"]
        variables = models["ours_keras_adam"].trainable_variables  # a copy of ours's weights, already trained on
        backup = [v.numpy() for v in variables]
        update = {name: round(update_milliseconds(cls, variables), 1) for name, cls in
                  (("fused", kt.optimizers.Adam), ("keras", KerasAdamUpdate), ("fused_again", kt.optimizers.Adam))}
        for variable, value in zip(variables, backup):
            variable.assign(value)
        print(json.dumps({"measurement": "fused_adam", "ours_over_ours_keras_adam": round(gain, 3),
                          "update_ms": update, "weights": sum(int(np.prod(v.shape)) for v in variables)}))
    print("| model | parameters | target tokens/s | GFLOP/s | % of matmul | s/step |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['parameters']:,} | {row['target_tokens_per_second']} | "
            f"{row['gflops_per_second']} | {row['percent_of_matmul']} | {row['seconds_per_step']} |"
        )
    print(f"ours / keras-hub: {ratio:.3f}; {compute_dtype} matmul {peak_gflops:.1f} GFLOP/s", end="")
    print(f", float32 matmul {peak_float32_gflops:.1f} GFLOP/s" if compute_dtype != "float32" else "")


if __name__ == "__main__":
    main()
