"""A BERT-base-shaped classifier per sentence on the CPU: TFLite float32 and dynamic int8, Keras, the SavedModel.

    python benchmarks/bert_tflite.py                     # 32 and 128 tokens, 2 threads
    python benchmarks/bert_tflite.py --lengths 128 --repeats 50

The model is what `kt-import` makes of a BERT-base checkpoint and `train.py
--task classify --init-from` fine-tunes (12 layers, d 768, 12 heads, d_ff
3072, vocabulary 30,522, segment embeddings, pooler), with random weights
and 2 classes: `TransformerClassifier(pooling="pooler")`. For each length,
one sentence of exactly that many tokens (batch 1) through the `classify`
signature that `export` writes: the Keras model (its call in a
`tf.function`), the SavedModel's `classify` (the module `export` saves,
loaded back), and the TFLite files (`export.family_module.FamilyModule`
converted as `export` converts it: float32 and dynamic int8, LiteRT with
XNNPACK, `--threads` threads). TensorFlow uses its default thread pools (pin
the process with `taskset` to compare on equal cores). Medians over
`--repeats` calls after 3 warm-up calls; file sizes. Prints one JSON object
per measurement, then a table.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transformer as kt  # noqa: E402
from export.converter import convert  # noqa: E402
from export.family_module import FamilyModule  # noqa: E402
from export.interpreter import interpreter  # noqa: E402
from keras_transformer.pretrained.bert import model_arguments  # noqa: E402

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)  # fmt: skip
VARIANTS = {"tflite": None, "tflite_dynamic_int8": "dynamic_int8"}


def classifier(max_length):
    arguments = model_arguments(BERT_BASE, BERT_BASE["vocab_size"], max_length, pooler=True, output_bias=False)
    return kt.TransformerClassifier(kt.models.TransformerEncoderModel(**arguments), 2, pooling="pooler", dropout=0.0)


def median_ms(call, repeats):
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = classifier(max(args.lengths))
    results = []

    def report(row):
        results.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as directory:
        for length in args.lengths:
            run = types.SimpleNamespace(model=model, max_length=length, family="classify", labels=["a", "b"],
                                        source_tokenizer=None)  # fmt: skip
            ids = np.random.default_rng(0).integers(4, BERT_BASE["vocab_size"], size=(1, length)).astype("int32")
            ids[0, 0], ids[0, -1] = 2, 3  # [CLS] ... [SEP]
            keras_call = tf.function(lambda x: model(x, training=False))
            expected = tf.nn.softmax(keras_call(ids)).numpy()
            report({"path": "keras", "tokens": length, "ms": median_ms(lambda: keras_call(ids).numpy(), args.repeats)})
            module = FamilyModule(run)
            saved = os.path.join(directory, f"saved_model_{length}")
            tf.saved_model.save(module, saved, signatures={"classify": module.classify.get_concrete_function()})
            signature = tf.saved_model.load(saved).signatures["classify"]
            size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(saved) for f in fs) / 1e6
            report({"path": "saved_model", "tokens": length, "size_mb": round(size, 1),
                    "ms": median_ms(lambda: signature(token_ids=tf.constant(ids))["probabilities"].numpy(),
                                    args.repeats)})  # fmt: skip
            for variant, quantization in VARIANTS.items():
                frozen = FamilyModule(run, fixed_length=True, freeze=True, flag_out_of_range=True,
                                      int8_embeddings=quantization == "dynamic_int8")  # fmt: skip
                path = os.path.join(directory, f"{variant}_{length}.tflite")
                with open(path, "wb") as f:
                    f.write(convert(frozen, ("classify",), quantization, isolate=True))
                runner = interpreter(path, num_threads=args.threads).get_signature_runner("classify")
                probabilities = runner(token_ids=ids)["probabilities"]
                report({"path": variant, "tokens": length, "size_mb": round(os.path.getsize(path) / 1e6, 1),
                        "largest_probability_difference": float(np.abs(probabilities - expected).max()),
                        "ms": median_ms(lambda: runner(token_ids=ids), args.repeats)})  # fmt: skip
    print(f"\nBERT-base-shaped classifier, batch 1, ms per sentence (median of {args.repeats}), load "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| path | " + " | ".join(f"{n} tokens" for n in args.lengths) + " | size MB |")
    print("| --- | " + " | ".join("---" for _ in args.lengths) + " | --- |")
    for path in ["keras", "saved_model", *VARIANTS]:
        rows = {r["tokens"]: r for r in results if r["path"] == path}
        size = next((r.get("size_mb") for r in rows.values() if "size_mb" in r), "-")
        print(f"| {path} | " + " | ".join(f"{rows[n]['ms']:.1f}" for n in args.lengths) + f" | {size} |")


if __name__ == "__main__":
    main()
