"""Multi30k English->German training throughput end to end: ours vs keras-hub fed as keras.io does.

    python benchmarks/multi30k.py [--data ../shared/data/multi30k] [--sentences 6400] [--repeats 3]

Both models are the "small" Transformer (d_model 256, 4 heads, d_ff 1024,
3+3 layers, untied output layers) over one joint SentencePiece vocabulary
(8000 pieces, trained here on the training split, as in RESULTS.md's run), the same optimizer and loss, through
`model.fit`, with the input pipeline in the timing (tokenization in
`tf.data`, every round anew):

- ours: `keras_transformer.data.pipeline.make_dataset`, sentences grouped by
  length and padded per batch (what `train.py` does);
- keras-hub: its `TokenAndPositionEmbedding`, `TransformerEncoder`,
  `TransformerDecoder` and a `Dense` output (as in
  `train_throughput.py`), fed like the keras.io translation example: every
  sentence padded to one fixed length (the longest in the data, by default).

After a warm-up round each, the two alternate A/B for `--repeats` rounds of
one pass over the same `--sentences` training pairs (batch 64). Reported:
median real (non-pad) target tokens per second and sentences per second,
and the ratio ours / keras-hub. Prints one JSON object per measurement, then
a table.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transformer as kt  # noqa: E402
from keras_transformer.data.pipeline import make_dataset, tokenize_pairs  # noqa: E402
from keras_transformer.data.readers import read_parallel  # noqa: E402
from keras_transformer.data.tokenizers import train_tokenizer  # noqa: E402
from common import keras_hub_model  # noqa: E402  (benchmarks/common.py)


def fixed_length_dataset(sources, targets, source_tokenizer, target_tokenizer, max_length, batch_size, length):
    """keras.io's feeding: every pair padded to `length` tokens, batches in file order."""
    pairs = tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
    dataset = tokenize_pairs(pairs, source_tokenizer, target_tokenizer, max_length)
    dataset = dataset.padded_batch(batch_size, padded_shapes=([length], [length], [length]))

    def to_inputs(source, decoder_inputs, labels):
        return {"encoder_token_ids": source, "decoder_token_ids": decoder_inputs}, labels

    return dataset.map(to_inputs).prefetch(tf.data.AUTOTUNE)


def compile_model(model, hidden_dim):
    schedule = kt.schedules.TransformerSchedule(hidden_dim, 4000)
    model.compile(
        optimizer=kt.optimizers.transformer_adam(hidden_dim, learning_rate=schedule),
        loss=kt.losses.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=[],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(HERE), "..", "shared", "data", "multi30k"))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=64, help="truncation, as train.py's --max-length")
    parser.add_argument("--fixed-length", type=int, help="keras-hub's padded length (default: the data's longest)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=6400, help="training pairs per timed round")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    sources, targets, _ = read_parallel(
        os.path.join(args.data, "train.en.gz"), os.path.join(args.data, "train.de.gz")
    )
    start = time.perf_counter()
    source_tokenizer = target_tokenizer = train_tokenizer("sentencepiece", sources + targets, args.vocab_size)
    print(json.dumps({"measurement": "tokenizers", "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    sources, targets = sources[: args.sentences], targets[: args.sentences]

    text = tf.data.Dataset.from_tensor_slices((sources, targets))
    pairs = list(tokenize_pairs(text, source_tokenizer, target_tokenizer, args.max_length))
    target_tokens = sum(int(labels.shape[0]) for _, _, labels in pairs)
    longest = max(max(int(s.shape[0]), int(labels.shape[0])) for s, _, labels in pairs)
    fixed_length = args.fixed_length or longest

    config = dict(kt.models.PRESETS[args.preset])
    ours = kt.Transformer.from_preset(
        args.preset,
        source_vocabulary_size=source_tokenizer.vocabulary_size,
        target_vocabulary_size=target_tokenizer.vocabulary_size,
        max_sequence_length=args.max_length,
    )
    hub = keras_hub_model(
        max(source_tokenizer.vocabulary_size, target_tokenizer.vocabulary_size),
        config["num_layers"], config["hidden_dim"], config["num_heads"], config["intermediate_dim"],
        config["dropout"], max(args.max_length, fixed_length),
    )  # fmt: skip
    for model in (ours, hub):
        compile_model(model, config["hidden_dim"])
    datasets = {
        "ours": make_dataset(
            sources, targets, source_tokenizer, target_tokenizer, args.max_length, args.batch_size, shuffle=False
        ),
        "keras_hub": fixed_length_dataset(
            sources, targets, source_tokenizer, target_tokenizer, args.max_length, args.batch_size, fixed_length
        ),
    }
    models = {"ours": ours, "keras_hub": hub}
    for name, model in models.items():  # warm-up: tracing (one graph per bucket shape for ours)
        model.fit(datasets[name], epochs=1, verbose=0, shuffle=False)
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(datasets[name], epochs=1, verbose=0, shuffle=False)
            seconds[name].append(time.perf_counter() - start)
    rows = []
    for name, model in models.items():
        median = statistics.median(seconds[name])
        row = {
            "measurement": "multi30k_train_throughput",
            "model": name,
            "feeding": "length buckets, padded per batch" if name == "ours" else f"every pair padded to {fixed_length}",
            "target_tokens_per_second": round(target_tokens / median),
            "sentences_per_second": round(len(sources) / median, 1),
            "seconds_per_round": round(median, 2),
            "rounds": [round(s, 2) for s in seconds[name]],
            "sentences": len(sources),
            "batch_size": args.batch_size,
            "preset": args.preset,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    ratio = rows[0]["target_tokens_per_second"] / rows[1]["target_tokens_per_second"]
    print(json.dumps({"measurement": "multi30k_throughput_ratio", "ours_over_keras_hub": round(ratio, 3)}))
    print("| model | feeding | target tokens/s | sentences/s | s per round |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['feeding']} | {row['target_tokens_per_second']} | "
            f"{row['sentences_per_second']} | {row['seconds_per_round']} |"
        )
    print(f"ours / keras-hub: {ratio:.3f}")


if __name__ == "__main__":
    main()
