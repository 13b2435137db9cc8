"""GPU training and generation on Keras's JAX backend: ours vs keras-hub's layers, one process.

    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu.py
    KERAS_BACKEND=jax python benchmarks/gpu.py --presets tiny --batch-size 8 \\
        --length 16 --vocabulary-size 500 --steps 2 --repeats 1 --matmul-size 256 \\
        --generate-length 8 --generate-preset tiny        # a smoke run on a CPU

Needs keras, keras-hub, JAX and NumPy only: nothing on its path imports
TensorFlow, so it runs on a GPU machine that has JAX but no TensorFlow.

Training, for each of `--presets` (default `base` and `big`): our
`Transformer` and keras-hub's `TokenAndPositionEmbedding`,
`TransformerEncoder` and `TransformerDecoder` assembled into the same
encoder-decoder (benchmarks/common.py), under `--precision` (default
`mixed_bfloat16`), with the same optimizer (`transformer_adam` and the
warm-up schedule), loss (masked, label-smoothed cross-entropy) and fixed
synthetic batches (`--batch-size` 128 rows of `--length` 128 tokens, each row
a random length in `[length / 2, length]`, padded; vocabulary 32,000). After
a warm-up (compilation), the two alternate A/B for `--repeats` rounds of
`--steps` steps, each round timed inside `fit`. Reported: median real target
tokens/s, TFLOP/s (the padded batch's training FLOPs, counted the same way
for both), and the share of a `--matmul-size`^3 matmul in the compute dtype
measured in the same process between the rounds.

Generation (`--generate-preset`, default `base`, float32, random weights):
our greedy decoder with the key/value cache at batch 1 and 64, and beam
search (4 beams) over 8 sentences, each `--generate-length` steps (the end
token disabled), compiled with `jax.jit` exactly as `generate` compiles it;
median ms per step.

Also reported: how many times the backend logged that a fused attention
implementation failed (`attention_fallbacks`): it must be 0.

Prints one JSON object per measurement, then a table.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transformer as kt  # noqa: E402
from common import alternate_fits, keras_hub_model, synthetic_batches, training_flops  # noqa: E402
from keras_transformer.decoding import beam_search, compile_decoder, greedy_search  # noqa: E402

NO_END = -1  # an id never produced, so every run decodes exactly `length` tokens


class FallbackCounter(logging.Handler):
    """Counts log records of a fused attention implementation failing (the backend then falls back)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = None

    def emit(self, record):
        message = record.getMessage()
        if "Failed to apply" in message or "implementation of jax.nn.dot_product_attention" in message:
            self.count += 1
            if self.first is None:
                self.first = message.splitlines()[0]


def matmul_tflops(size, dtype, repeats=5):
    """TFLOP/s of one `size`^3 matmul in `dtype`, compiled, median of `repeats`."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(keys[0], (size, size), dtype=jnp.dtype(dtype))
    b = jax.random.normal(keys[1], (size, size), dtype=jnp.dtype(dtype))
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e12


def compiled_models(args, preset):
    config = dict(kt.models.PRESETS[preset], vocabulary_size=args.vocabulary_size)
    ours = kt.Transformer.from_preset(
        preset,
        source_vocabulary_size=args.vocabulary_size,
        target_vocabulary_size=args.vocabulary_size,
        max_sequence_length=args.length,
    )
    hub = keras_hub_model(
        args.vocabulary_size,
        config["num_layers"],
        config["hidden_dim"],
        config["num_heads"],
        config["intermediate_dim"],
        config["dropout"],
        args.length,
    )
    for model in (ours, hub):
        schedule = kt.schedules.TransformerSchedule(config["hidden_dim"], 4000)
        model.compile(
            optimizer=kt.optimizers.transformer_adam(config["hidden_dim"], learning_rate=schedule),
            loss=kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
            metrics=[],
        )
    return config, {"ours": ours, "keras_hub": hub}


def train_rows(args, preset, counter):
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(args.precision)
    compute_dtype = keras.config.dtype_policy().compute_dtype
    config, models = compiled_models(args, preset)
    batches = synthetic_batches(
        args.vocabulary_size, args.batch_size, args.length, args.length, args.steps, min_fraction=0.5
    )
    inputs = {key: np.concatenate([x[key] for x, _ in batches]) for key in batches[0][0]}
    labels = np.concatenate([y for _, y in batches])
    target_tokens = int((labels != 0).sum())
    flops = training_flops(config, args.batch_size, args.length, args.length) * len(batches)

    def fit(model, callbacks):
        model.fit(inputs, labels, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)

    fallbacks_before = counter.count
    peak = []
    seconds = alternate_fits(
        models, fit, args.repeats, lambda: peak.append(matmul_tflops(args.matmul_size, compute_dtype))
    )
    peak_tflops = statistics.median(peak)
    rows = []
    for name, model in models.items():
        median = statistics.median(seconds[name])
        rows.append(
            {
                "measurement": "gpu_train",
                "preset": preset,
                "model": name,
                "parameters": model.count_params(),
                "target_tokens_per_second": round(target_tokens / median),
                "tflops_per_second": round(flops / median / 1e12, 2),
                "matmul_tflops_per_second": round(peak_tflops, 2),
                "percent_of_matmul": round(100 * flops / median / 1e12 / peak_tflops, 1),
                "seconds_per_step": round(median / len(batches), 5),
                "precision": args.precision,
                "batch_size": args.batch_size,
                "length": args.length,
                "attention_fallbacks": counter.count - fallbacks_before,
            }
        )
    rows.append(
        {
            "measurement": "gpu_train_ratio",
            "preset": preset,
            "ours_over_keras_hub": round(rows[0]["target_tokens_per_second"] / rows[1]["target_tokens_per_second"], 3),
        }
    )
    keras.config.set_dtype_policy("float32")
    return rows


def generate_rows(args, counter):
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    model = kt.Transformer.from_preset(
        args.generate_preset,
        source_vocabulary_size=args.vocabulary_size,
        target_vocabulary_size=args.vocabulary_size,
        max_sequence_length=max(args.length, args.generate_length + 1),
    )
    steps = args.generate_length
    rng = np.random.default_rng(0)
    cases = [
        ("greedy", 1, compile_decoder(model, lambda ids: greedy_search(model, ids, steps, end_id=NO_END))),
        ("greedy", 64, compile_decoder(model, lambda ids: greedy_search(model, ids, steps, end_id=NO_END))),
        ("beam4", 8, compile_decoder(model, lambda ids: beam_search(model, ids, steps, beam_size=4, end_id=NO_END))),
    ]
    import jax

    fallbacks_before = counter.count
    sources = {}
    for _, batch, function in cases:  # compile each shape first
        sources[batch] = rng.integers(4, args.vocabulary_size, size=(batch, args.source_length)).astype("int32")
        jax.block_until_ready(function(sources[batch]))
    times = {index: [] for index in range(len(cases))}
    for _ in range(args.generate_repeats):
        for index, (_, batch, function) in enumerate(cases):
            start = time.perf_counter()
            jax.block_until_ready(function(sources[batch]))
            times[index].append(time.perf_counter() - start)
    rows = []
    for index, (method, batch, _) in enumerate(cases):
        rows.append(
            {
                "measurement": "gpu_generate",
                "preset": args.generate_preset,
                "method": method,
                "batch_size": batch,
                "steps": steps,
                "ms_per_step": round(1000 * statistics.median(times[index]) / steps, 4),
                "precision": "float32",
                "attention_fallbacks": counter.count - fallbacks_before,
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["base", "big"])
    parser.add_argument("--vocabulary-size", type=int, default=32000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--length", type=int, default=128, help="padded source and target length")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="A/B rounds after the warm-up")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"], default="mixed_bfloat16")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--generate-preset", default="base")
    parser.add_argument("--generate-length", type=int, default=64, help="decoding steps")
    parser.add_argument("--source-length", type=int, default=32, help="source tokens when generating")
    parser.add_argument("--generate-repeats", type=int, default=5)
    parser.add_argument("--no-generate", action="store_true")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        parser.error(f"run it on the JAX backend (KERAS_BACKEND=jax); this process has {keras.backend.backend()!r}.")
    import jax

    counter = FallbackCounter()
    for name in ("absl", "", "jax", "keras"):
        logging.getLogger(name).addHandler(counter)
    device = jax.devices()[0]
    print(json.dumps({"measurement": "device", "platform": device.platform, "device": str(device.device_kind),
                      "jax": jax.__version__, "keras": keras.__version__}), flush=True)
    rows = []
    for preset in args.presets:
        for row in train_rows(args, preset, counter):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if not args.no_generate:
        for row in generate_rows(args, counter):
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| preset | model | target tokens/s | TFLOP/s | % of matmul | fallbacks |\n| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if row["measurement"] == "gpu_train":
            print(f"| {row['preset']} | {row['model']} | {row['target_tokens_per_second']:,} | "
                  f"{row['tflops_per_second']} | {row['percent_of_matmul']} | {row['attention_fallbacks']} |")
    for row in rows:
        if row["measurement"] == "gpu_generate":
            print(f"generate {row['method']} batch {row['batch_size']}: {row['ms_per_step']} ms/step")
    if counter.count:
        print(f"attention fallbacks: {counter.count} (first: {counter.first})", file=sys.stderr)


if __name__ == "__main__":
    main()
