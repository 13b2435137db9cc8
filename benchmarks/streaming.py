"""Training fed from files streamed by tf.data vs from lists in memory: same model, same sentences, one run.

    python benchmarks/streaming.py [--data ../shared/data/multi30k] [--sentences 6400] [--repeats 3]

The first `--sentences` Multi30k English->German training pairs, one joint
SentencePiece vocabulary, our "small" Transformer (as `multi30k.py`), batch
64, through `model.fit`, the input pipeline in the timing:

- in_memory: the pairs as Python lists, `data.pipeline.make_dataset` (a
  whole-set shuffle, what `train.py` did before it streamed);
- streamed: the same pairs written to gzip shards, read as `train.py` reads
  them now: `data.streaming.parallel_text_dataset` (shards interleaved,
  lines checked in the graph) and `data.pipeline.batch_pairs` with a
  bounded shuffle buffer (`--shuffle-buffer`).

After a warm-up pass each, the two alternate A/B for `--repeats` passes;
reported: median real target tokens per second and the ratio streamed /
in_memory. Prints one JSON object per measurement, then a table.
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import keras  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.data.pipeline import batch_pairs, make_dataset  # noqa: E402
from keras_transformer.data.readers import read_parallel  # noqa: E402
from keras_transformer.data.streaming import parallel_text_dataset  # noqa: E402
from keras_transformer.data.tokenizers import train_tokenizer  # noqa: E402


def write_shards(directory, sources, targets, shards):
    size = -(-len(sources) // shards)
    for shard in range(shards):
        for side, lines in (("en", sources), ("de", targets)):
            with gzip.open(os.path.join(directory, f"train.{shard:02d}.{side}.gz"), "wt", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines[shard * size : (shard + 1) * size]))
    return os.path.join(directory, "train.*.en.gz"), os.path.join(directory, "train.*.de.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(HERE), "..", "shared", "data", "multi30k"))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=6400, help="training pairs per pass")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shuffle-buffer", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    warnings.filterwarnings("ignore", message="Your input ran out of data")  # a streamed pass ends so

    sources, targets, _ = read_parallel(os.path.join(args.data, "train.en.gz"), os.path.join(args.data, "train.de.gz"))
    tokenizer = train_tokenizer("sentencepiece", sources + targets, args.vocab_size)
    sources, targets = sources[: args.sentences], targets[: args.sentences]
    directory = tempfile.mkdtemp(prefix="kt-streaming-")
    source_files, target_files = write_shards(directory, sources, targets, args.shards)

    datasets = {
        "in_memory": make_dataset(sources, targets, tokenizer, tokenizer, args.max_length, args.batch_size, seed=0),
        "streamed": batch_pairs(
            parallel_text_dataset(source_files, target_files, shuffle_files=True, seed=0),
            tokenizer, tokenizer, args.max_length, args.batch_size, shuffle_buffer=args.shuffle_buffer, seed=0,
        ),  # fmt: skip
    }
    target_tokens = sum(int((y != 0).sum()) for _, y in datasets["in_memory"].as_numpy_iterator())
    streamed_tokens = sum(int((y != 0).sum()) for _, y in datasets["streamed"].as_numpy_iterator())
    assert streamed_tokens == target_tokens, (streamed_tokens, target_tokens)  # the same pairs, in another order

    model = kt.Transformer.from_preset(
        args.preset, source_vocabulary_size=tokenizer.vocabulary_size, target_vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=args.max_length,
    )  # fmt: skip
    model.compile(optimizer=kt.optimizers.transformer_adam(model.hidden_dim), label_smoothing=0.1, metrics=[])
    for dataset in datasets.values():  # warm-up: a graph per bucket shape
        model.fit(dataset, epochs=1, verbose=0)
    seconds = {name: [] for name in datasets}
    for _ in range(args.repeats):
        for name, dataset in datasets.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    rows = []
    for name in datasets:
        median = statistics.median(seconds[name])
        rows.append(
            {
                "measurement": "feeding_throughput",
                "feeding": name,
                "target_tokens_per_second": round(target_tokens / median),
                "seconds_per_pass": round(median, 2),
                "passes": [round(s, 2) for s in seconds[name]],
                "sentences": len(sources),
                "preset": args.preset,
                "shuffle_buffer": args.shuffle_buffer if name == "streamed" else len(sources),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ratio = rows[1]["target_tokens_per_second"] / rows[0]["target_tokens_per_second"]
    print(json.dumps({"measurement": "feeding_ratio", "streamed_over_in_memory": round(ratio, 3)}))
    print("| feeding | target tokens/s | s per pass |\n|---|---|---|")
    for row in rows:
        print(f"| {row['feeding']} | {row['target_tokens_per_second']} | {row['seconds_per_pass']} |")


if __name__ == "__main__":
    main()
