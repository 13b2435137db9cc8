"""Greedy generation speed: ms per generated token, medians, in one run.

    python benchmarks/generation.py [--lengths 32 128] [--batch-sizes 1 32] [--repeats 5]

Three decoders of the same size (the "small" preset by default, random
weights) generate exactly `L` tokens (the end token is disabled) for batches
of 1 and 32 source sentences of `--source-length` tokens:

- ours_cached: `keras_transformer.decoding.greedy_search` (key/value cache,
  one `ops.while_loop`);
- ours_uncached: the same model re-running the decoder over the whole
  prefix at every step (what the TensorFlow tutorial does);
- keras_hub_cached: keras-hub's `TransformerEncoder`/`TransformerDecoder`
  layers with their own caches, in the same kind of loop (learned
  positions and a separate output layer: the same work per token).

Each is compiled with `tf.function` ("graph") and with XLA
(`jit_compile=True`, "xla"); the best of the two is what the backend allows.
For each length and batch size, all of them are compiled first, then timed
in turn `--repeats` times (A/B alternated), and the medians are reported.
Prints one JSON object per measurement, then a table of ms per token.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.decoding import greedy_search  # noqa: E402

NO_END = -1  # an id never produced, so every run decodes exactly `length` tokens


def ours_uncached(model, source, length):
    """Greedy decoding that re-runs the decoder over the whole prefix each step."""
    encoder_output, encoder_mask = model.encode(source)
    batch = ops.shape(source)[0]
    tokens = ops.concatenate([ops.full((batch, 1), kt.START_ID, "int32"), ops.zeros((batch, length), "int32")], 1)

    def body(index, tokens):
        logits = model.decode(tokens[:, :length], encoder_output, encoder_mask)  # (B, T, V), all positions
        next_token = ops.cast(ops.argmax(ops.take(logits, index, axis=1), -1), "int32")
        return index + 1, ops.slice_update(tokens, (0, index + 1), next_token[:, None])

    _, tokens = ops.while_loop(lambda i, t: i < length, body, (ops.convert_to_tensor(0), tokens))
    return tokens[:, 1:]


class KerasHubSeq2Seq:
    """The same architecture from keras-hub layers, with keras-hub's caches."""

    def __init__(self, vocabulary_size, num_layers, hidden_dim, num_heads, intermediate_dim, max_length):
        def embedding():
            return keras_hub.layers.TokenAndPositionEmbedding(vocabulary_size, max_length, hidden_dim)

        self.source_embedding, self.target_embedding = embedding(), embedding()
        self.encoders = [keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads) for _ in range(num_layers)]
        self.decoders = [keras_hub.layers.TransformerDecoder(intermediate_dim, num_heads) for _ in range(num_layers)]
        self.output_layer = keras.layers.Dense(vocabulary_size)
        self.num_heads, self.head_dim = num_heads, hidden_dim // num_heads

    def build(self, source, length):
        x = self.source_embedding(source)
        for layer in self.encoders:
            x = layer(x)
        y = self.target_embedding(ops.zeros((ops.shape(source)[0], length), "int32"))
        for layer in self.decoders:
            y = layer(y, x)
        self.output_layer(y)

    def greedy(self, source, length):
        batch = ops.shape(source)[0]
        x = self.source_embedding(source)
        for layer in self.encoders:
            x = layer(x)
        cross = [
            ops.stack(
                [
                    layer._cross_attention_layer._key_dense(x),
                    layer._cross_attention_layer._value_dense(x),
                ],
                axis=1,
            )
            for layer in self.decoders
        ]
        caches = [ops.zeros((batch, 2, length, self.num_heads, self.head_dim)) for _ in self.decoders]
        tokens = ops.concatenate([ops.full((batch, 1), kt.START_ID, "int32"), ops.zeros((batch, length), "int32")], 1)

        def body(index, tokens, *caches):
            token = ops.slice(tokens, (0, index), (batch, 1))
            positions = self.target_embedding.position_embedding.position_embeddings
            y = self.target_embedding.token_embedding(token) + ops.slice(positions, (index, 0), (1, ops.shape(positions)[1]))
            new_caches = []
            for layer, cache, cross_cache in zip(self.decoders, caches, cross):
                y, cache, _ = layer(
                    y,
                    x,  # keras-hub wants it even when the cross-attention cache is filled
                    self_attention_cache=cache,
                    self_attention_cache_update_index=index,
                    cross_attention_cache=cross_cache,
                )
                new_caches.append(cache)
            next_token = ops.cast(ops.argmax(self.output_layer(y)[:, 0], -1), "int32")
            return (index + 1, ops.slice_update(tokens, (0, index + 1), next_token[:, None]), *new_caches)

        result = ops.while_loop(lambda i, *rest: i < length, body, (ops.convert_to_tensor(0), tokens, *caches))
        return result[1][:, 1:]


def time_alternated(functions, source, length, repeats):
    """Median ms per token of each function, timed in turn (A/B/...) `repeats` times after compiling."""
    for function in functions.values():
        np.asarray(function(source))  # compile
    times = {key: [] for key in functions}
    for _ in range(repeats):
        for key, function in functions.items():
            start = time.perf_counter()
            np.asarray(function(source))
            times[key].append((time.perf_counter() - start) * 1000 / length)
    return {key: statistics.median(values) for key, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--source-length", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--compile", nargs="+", default=["graph", "xla"], choices=["graph", "xla"])
    parser.add_argument("--decoders", nargs="+", default=["ours_cached", "ours_uncached", "keras_hub_cached"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    config = kt.models.PRESETS[args.preset]
    max_length = max(args.lengths + [args.source_length])
    model = kt.Transformer.from_preset(
        args.preset,
        source_vocabulary_size=args.vocabulary_size,
        target_vocabulary_size=args.vocabulary_size,
        max_sequence_length=max_length,
    )
    hub = KerasHubSeq2Seq(
        args.vocabulary_size,
        config["num_layers"],
        config["hidden_dim"],
        config["num_heads"],
        config["intermediate_dim"],
        max_length,
    )
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    rng = np.random.default_rng(0)
    rows = []
    for length in args.lengths:
        for batch_size in args.batch_sizes:
            source = rng.integers(4, args.vocabulary_size, size=(batch_size, args.source_length)).astype("int32")
            hub.build(source, length)
            functions = {
                "ours_cached": lambda s, n=length: greedy_search(model, s, n, end_id=NO_END),
                "ours_uncached": lambda s, n=length: ours_uncached(model, s, n),
                "keras_hub_cached": lambda s, n=length: hub.greedy(s, n),
            }
            compiled = {
                (name, mode): tf.function(functions[name], jit_compile=mode == "xla")
                for name in args.decoders
                for mode in args.compile
            }
            medians = time_alternated(compiled, source, length, args.repeats)
            outputs = {}
            for (name, mode), function in compiled.items():
                row = {
                    "decoder": name,
                    "compile": mode,
                    "batch_size": batch_size,
                    "output_tokens": length,
                    "ms_per_token": round(medians[name, mode], 3),
                    "preset": args.preset,
                    "device": device,
                }
                outputs[name] = np.asarray(function(source))
                rows.append(row)
                print(json.dumps(row), flush=True)
            if "ours_cached" in outputs and "ours_uncached" in outputs:
                # Same model, same tokens: the cache changes the cost, not the result.
                same = bool(np.array_equal(outputs["ours_cached"], outputs["ours_uncached"]))
                print(json.dumps({"batch_size": batch_size, "output_tokens": length, "cached_equals_uncached": same}))
    print_table(rows, args)


def print_table(rows, args):
    """ms per token: one row per (length, batch), one column per decoder and compilation."""
    columns = [(name, mode) for name in args.decoders for mode in args.compile]
    print("| tokens | batch | " + " | ".join(f"{name} ({mode})" for name, mode in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for length in args.lengths:
        for batch_size in args.batch_sizes:
            cells = []
            for name, mode in columns:
                match = [
                    r for r in rows
                    if (r["decoder"], r["compile"], r["batch_size"], r["output_tokens"]) == (name, mode, batch_size, length)
                ]  # fmt: skip
                cells.append(str(match[0]["ms_per_token"]) if match else "-")
            print(f"| {length} | {batch_size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
