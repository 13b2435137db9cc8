"""TFLite `generate`: size and ms per token of each variant, cached vs re-running the prefix.

    python benchmarks/tflite.py                                   # random weights, fixed lengths
    python benchmarks/tflite.py --model runs/<name> --sentences 100   # a trained run, real sentences

Fixed lengths (default): a "small" model (random weights, 8,000-token
vocabulary) whose greedy loop never meets an end token generates exactly 32
and 128 tokens at batch 1, as float32 and dynamic-int8 TFLite files:

- cached: the library's loop (`keras_transformer.decoding.greedy_search`,
  key/value caches), what `export` ships;
- prefix: a loop that re-runs the decoder over the whole fixed-length
  prefix at every step (no cache), the baseline a cache must beat.

With `--model`, the run's model is converted as `export` does (`generate`,
stopping at the end token) in each variant (float32, float16, dynamic int8,
int8), and timed on its validation sentences one at a time; token agreement
is against the Keras model's greedy output and against float32.

LiteRT interpreter (`ai_edge_litert`) with XNNPACK, `--threads` threads.
Medians over `--repeats` runs. Prints one JSON object per measurement, then a
table.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import keras_transformer as kt  # noqa: E402
from export.converter import convert  # noqa: E402
from export.interpreter import interpreter  # noqa: E402
from export.tflite import QUANTIZATION  # noqa: E402
from export.translation_module import TranslationModule  # noqa: E402
from keras_transformer.decoding import greedy_search  # noqa: E402
from keras_transformer.decoding.greedy import best_token  # noqa: E402

NO_END = -1


class FixedLengthModule(TranslationModule):
    """`generate` producing exactly `max_sequence_length` tokens, cached or re-running the prefix."""

    def __init__(self, model, cached, int8_embeddings=False):
        super().__init__(model, fixed_source_length=True, freeze=True, int8_embeddings=int8_embeddings)
        length = self.max_length
        ids = tf.TensorSpec([None, length], tf.int32, name="encoder_token_ids")

        def generate(encoder_token_ids):
            with self.weight_scope():
                if cached:
                    return {"token_ids": greedy_search(model, encoder_token_ids, length, end_id=NO_END)}
                return {"token_ids": prefix_greedy(model, encoder_token_ids, length)}

        self.generate = tf.function(generate, input_signature=[ids])


def prefix_greedy(model, source, length):
    """Greedy decoding that runs the decoder over the whole (fixed-length) prefix each step."""
    encoder_output, encoder_mask = model.encode(source)
    batch = ops.shape(source)[0]
    tokens = ops.concatenate([ops.full((batch, 1), kt.START_ID, "int32"), ops.zeros((batch, length), "int32")], 1)

    def body(index, tokens):
        logits = model.decode(tokens[:, :length], encoder_output, encoder_mask)  # (B, T, V): every position
        next_token = ops.cast(best_token(ops.take(logits, index, axis=1)), "int32")
        return index + 1, ops.slice_update(tokens, (0, index + 1), next_token[:, None])

    _, tokens = ops.while_loop(lambda i, t: i < length, body, (ops.convert_to_tensor(0), tokens))
    return tokens[:, 1:]


def write(flatbuffer, directory, name):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return path


def time_generate(path, inputs, threads, repeats):
    """Median seconds of `generate` per input row (batch 1), and the outputs."""
    runner = interpreter(path, num_threads=threads).get_signature_runner("generate")
    outputs = [runner(encoder_token_ids=row[None])["token_ids"][0] for row in inputs[:1]]  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = [runner(encoder_token_ids=row[None])["token_ids"][0] for row in inputs]
        times.append(time.perf_counter() - start)
    return statistics.median(times), np.stack(outputs)


def fixed_lengths(args, directory):
    rows = []
    rng = np.random.default_rng(0)
    for length in args.lengths:
        model = kt.Transformer.from_preset(
            args.preset,
            source_vocabulary_size=args.vocabulary_size,
            target_vocabulary_size=args.vocabulary_size,
            max_sequence_length=length,
            dropout=0.0,
        )
        source = rng.integers(4, args.vocabulary_size, size=(1, length)).astype("int32")
        source[:, 16:] = 0  # 16 source tokens
        for loop in ("cached", "prefix"):
            for variant in ("tflite", "tflite_dynamic_int8"):
                module = FixedLengthModule(model, loop == "cached", QUANTIZATION[variant] == "dynamic_int8")
                flatbuffer = convert(module, ("generate",), QUANTIZATION[variant])
                path = write(flatbuffer, directory, f"{loop}_{length}_{variant}.tflite")
                seconds, tokens = time_generate(path, source, args.threads, args.repeats)
                row = {
                    "measurement": "tflite_generate_fixed_length",
                    "loop": loop,
                    "variant": variant,
                    "output_tokens": length,
                    "size_mb": round(len(flatbuffer) / 1e6, 2),
                    "ms_per_token": round(seconds * 1000 / length, 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def trained_run(args, directory):
    from export.run import Run
    from export.converter import encode_sentences
    from export.tflite import build_module
    from export.verify import token_agreement, validation_data

    run = Run(args.model)
    args.data, args.limit = None, args.sentences
    sources, _ = validation_data(run, args)
    ids = encode_sentences(run, sources)
    reference = np.asarray(run.model.generate(ids))
    rows, float32 = [], None
    calibration = encode_sentences(run, run.calibration_sentences()[:100])
    for variant in args.variants:
        module = build_module(run.model, quantization=QUANTIZATION[variant])
        flatbuffer = convert(module, ("generate",), QUANTIZATION[variant], calibration)
        path = write(flatbuffer, directory, f"{variant}.tflite")
        seconds, tokens = time_generate(path, ids, args.threads, args.repeats)
        generated = int(sum(np.argmax(row == kt.END_ID) + 1 if (row == kt.END_ID).any() else len(row) for row in tokens))
        row = {
            "measurement": "tflite_generate_trained",
            "variant": variant,
            "sentences": len(ids),
            "size_mb": round(len(flatbuffer) / 1e6, 2),
            "ms_per_token": round(seconds * 1000 / generated, 3),
            "ms_per_sentence": round(seconds * 1000 / len(ids), 2),
            "token_agreement_keras": round(token_agreement(reference, tokens)[0], 4),
        }
        if float32 is None:
            float32 = tokens
        row["token_agreement_float32"] = round(token_agreement(float32, tokens)[0], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows[1:]:
        row["size_vs_float32"] = round(row["size_mb"] / rows[0]["size_mb"], 3)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained run directory (default: random weights, fixed lengths)")
    parser.add_argument("--sentences", type=int, default=100, help="validation sentences of --model")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["tflite", "tflite_float16", "tflite_dynamic_int8", "tflite_int8"],
        help="with --model: the variants, float32 first",
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        rows = trained_run(args, directory) if args.model else fixed_lengths(args, directory)
    columns = [c for c in dict.fromkeys(k for row in rows for k in row) if c != "measurement"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
