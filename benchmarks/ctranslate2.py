"""The same Marian model in CTranslate2 and in this project: ms per token on the CPU.

    python benchmarks/ctranslate2.py                      # the `small` shape, vocabulary 8,000
    python benchmarks/ctranslate2.py --shapes small base  # and Marian-base: 6+6 layers, d 512, vocabulary 58,101

For each shape, transformers builds a Marian checkpoint with random weights
(no download); `kt-import` reads it into a run of this project and
CTranslate2's converter reads the same directory, so both run one model.
Decoding length pinned: CTranslate2 with `min_decoding_length =
max_decoding_length = --tokens`; ours to the run's maximum length (the
import's `max_sequence_length = --tokens`), the end token never chosen (its
output bias is -1e4 in the checkpoint), checked on every output. Both emit
the same number of tokens from the same 16-token source (+ the end token
Marian appends). Greedy and beam 4, batch 1 (ms per token) and `--batch`
sentences at once (ms per decoding step), `--threads` threads.

Ours: Keras `generate` (a `tf.function`), the same loop under XLA
(`jit_compile=True`), the SavedModel's `generate` / `beam_search`
signatures, and the TFLite files `export` writes (float32 and dynamic int8,
`generate` / `beam_search`), with `--threads` threads for TFLite (the
TensorFlow paths use TensorFlow's default thread pools; pin the process with
`taskset` to compare on equal cores). CTranslate2 runs in a fresh process
per setting, since its environment variables are read at import: its
float32 and int8 compute types, each by default and with `CT2_USE_MKL=0`
and with `CT2_FORCE_CPU_ISA=AVX512`. Sizes: the TFLite files, the
SavedModel directory, CTranslate2's converted directory (float32, and
`--quantization int8` for its int8 rows). Medians over `--repeats`. Prints
one JSON object per measurement, then a table. Time it on a quiet machine
(its OpenMP threads spin: a loaded machine distorts it most) and say how
quiet: the load average is printed with the results.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCHMARKS)
# This file's name is the package's: its own folder must not shadow `import ctranslate2`.
sys.path[:] = [ROOT] + [path for path in sys.path if os.path.abspath(path or ".") != BENCHMARKS]

SHAPES = {
    "small": dict(layers=3, d_model=256, heads=4, ffn=1024, vocabulary=8000),
    "base": dict(layers=6, d_model=512, heads=8, ffn=2048, vocabulary=58101),
}
CT2_SETTINGS = {"default": {}, "CT2_USE_MKL=0": {"CT2_USE_MKL": "0"}, "AVX512": {"CT2_FORCE_CPU_ISA": "AVX512"}}
SOURCE_TOKENS = 16
SEARCHES = {"greedy": 1, "beam4": 4}  # beams per sentence


def make_checkpoint(directory, shape, max_length):
    """A Marian directory with random weights; the end token's bias keeps decoding from ending early."""
    import numpy as np
    import sentencepiece
    import torch
    from transformers import MarianConfig, MarianMTModel

    size = SHAPES[shape]
    vocabulary = {"</s>": 0, "<unk>": 1, **{f"\u2581p{i}": i for i in range(2, size["vocabulary"] - 1)}}
    vocabulary["<pad>"] = pad = size["vocabulary"] - 1
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocabulary, f, ensure_ascii=False)
    lines = os.path.join(directory, "lines.txt")
    with open(lines, "w") as f:
        f.write("\n".join(f"p{i} p{i + 1} p{i * 7 % 100}" for i in range(2000)) + "\n")
    for side in ("source", "target"):
        sentencepiece.SentencePieceTrainer.train(
            input=lines, model_prefix=os.path.join(directory, side), vocab_size=100, minloglevel=2,
            unk_id=1, eos_id=0, bos_id=-1, pad_id=-1,
        )  # fmt: skip
        os.replace(os.path.join(directory, f"{side}.model"), os.path.join(directory, f"{side}.spm"))
    os.remove(lines)
    config = MarianConfig(
        vocab_size=size["vocabulary"], decoder_vocab_size=size["vocabulary"], d_model=size["d_model"],
        encoder_layers=size["layers"], decoder_layers=size["layers"], encoder_attention_heads=size["heads"],
        decoder_attention_heads=size["heads"], encoder_ffn_dim=size["ffn"], decoder_ffn_dim=size["ffn"],
        max_position_embeddings=max(512, max_length), pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
        forced_eos_token_id=0, scale_embedding=True, activation_function="swish",
    )  # fmt: skip
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.model.shared.weight[pad] = 0.0  # as OPUS-MT's: CTranslate2 starts from a zero embedding
        model.final_logits_bias[0, 0] = -1e4  # the end token never wins: both sides decode the pinned length
    model.save_pretrained(directory)
    return np.random.default_rng(0).integers(2, pad, size=SOURCE_TOKENS)


def _median(function, repeats):
    """Median seconds of `function()` over `repeats` calls, after one warm-up call (its result returned)."""
    result = function()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times), result


def ctranslate2_child(arguments):
    """In a fresh process (the environment set): time CTranslate2 on one model; prints one JSON line."""
    import ctranslate2

    model, source, tokens, threads, repeats, batch, compute_type = arguments
    translator = ctranslate2.Translator(model, device="cpu", compute_type=compute_type, intra_threads=threads)
    results = []
    for search, beam_size in SEARCHES.items():
        for rows in (1, batch):
            inputs = [source] * rows
            seconds, output = _median(
                lambda: translator.translate_batch(
                    inputs, beam_size=beam_size, min_decoding_length=tokens, max_decoding_length=tokens
                ),
                repeats,
            )  # fmt: skip
            results.append((search, rows, seconds, len(output[0].hypotheses[0])))
    print(json.dumps(results))


def time_ctranslate2(model, source, args):
    rows = []
    for compute_type in ("float32", "int8"):
        for name, environment in CT2_SETTINGS.items():
            arguments = [model, source, args.tokens, args.threads, args.repeats, args.batch, compute_type]
            done = subprocess.run(
                [sys.executable, __file__, "--ctranslate2-child", json.dumps(arguments)],
                env={**os.environ, **environment}, capture_output=True, text=True, check=True,
            )  # fmt: skip
            for search, batch, seconds, emitted in json.loads(done.stdout.strip().split("\n")[-1]):
                rows.append({
                    "engine": "ctranslate2", "variant": f"{compute_type} ({name})", "search": search,
                    "batch": batch, "tokens": emitted, "ms": round(seconds * 1000 / emitted, 3),
                })  # fmt: skip
    return rows


def _emitted(token_ids):
    """Tokens each row emitted: the row length, checked to hold no end or padding id (the pinned length)."""
    import numpy as np

    token_ids = np.asarray(token_ids)
    if np.isin(token_ids, [0, 3]).any():
        raise RuntimeError("a decoding ended early: the pinned length did not hold")
    return token_ids.shape[-1]


def time_ours(run_path, source_ids, args, directory):
    """Keras `generate` (a tf.function, and the same loop under XLA), the SavedModel and the TFLite files."""
    import numpy as np
    import tensorflow as tf

    from export.converter import convert
    from export.interpreter import interpreter
    from export.run import Run
    from export.tflite import QUANTIZATION, SIGNATURES, build_module
    from export.translation_module import TranslationModule
    from keras_transformer.decoding import beam_search, greedy_search

    model = Run(run_path).model
    length = args.tokens
    sizes, runners = {}, {}  # the TFLite files first: converting a large model needs the memory
    for variant in ("tflite", "tflite_dynamic_int8"):
        quantization = QUANTIZATION[variant]
        module = build_module(model, SEARCHES["beam4"], quantization=quantization)
        flatbuffer = convert(module, SIGNATURES, quantization)
        path = os.path.join(directory, f"{variant}.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        sizes[variant] = len(flatbuffer) / 1e6
        runners[variant] = interpreter(path, num_threads=args.threads)
    keras_xla = {
        "greedy": tf.function(lambda ids: greedy_search(model, ids, length), jit_compile=True),
        "beam4": tf.function(lambda ids: beam_search(model, ids, length, SEARCHES["beam4"])[0], jit_compile=True),
    }
    saved = os.path.join(directory, "saved_model")
    module = TranslationModule(model, beam_size=SEARCHES["beam4"])
    tf.saved_model.save(module, saved, signatures={name: getattr(module, name).get_concrete_function()
                                                   for name in ("generate", "beam_search")})  # fmt: skip
    loaded = tf.saved_model.load(saved)
    sizes["saved_model"] = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(saved)
                               for name in names) / 1e6  # fmt: skip

    def calls(search, inputs):
        beam = search == "beam4"
        yield "keras generate", lambda: (
            model.generate(inputs, max_length=length, method="beam", beam_size=SEARCHES[search])[0][:, 0]
            if beam else model.generate(inputs, max_length=length)
        )  # fmt: skip
        yield "keras xla", lambda: keras_xla[search](tf.constant(inputs))
        signature = loaded.signatures["beam_search" if beam else "generate"]
        yield "saved_model", lambda: signature(encoder_token_ids=tf.constant(inputs))["token_ids"]
        for variant, runner in runners.items():
            run = runner.get_signature_runner("beam_search" if beam else "generate")
            yield variant, lambda run=run: run(encoder_token_ids=inputs)["token_ids"]

    rows = []
    for search in SEARCHES:
        for batch in (1, args.batch):
            inputs = np.repeat(source_ids, batch, axis=0)
            for variant, call in calls(search, inputs):
                seconds, output = _median(call, args.repeats)
                emitted = _emitted(output)
                row = {"engine": "keras-transformer", "variant": variant, "search": search, "batch": batch,
                       "tokens": int(emitted), "ms": round(seconds * 1000 / emitted, 3)}  # fmt: skip
                if variant in sizes:
                    row["size_mb"] = round(sizes[variant], 1)
                rows.append(row)
    return rows


def measure(shape, args):
    import numpy as np

    from ctranslate2.converters import TransformersConverter
    from keras_transformer.pretrained import import_marian

    with tempfile.TemporaryDirectory() as directory:
        checkpoint = os.path.join(directory, "marian")
        source = make_checkpoint(checkpoint, shape, args.tokens)
        run = import_marian(checkpoint, os.path.join(directory, "runs"), shape, max_sequence_length=args.tokens)
        converted = os.path.join(directory, "ct2")
        TransformersConverter(checkpoint).convert(converted)
        ct2_size = sum(os.path.getsize(os.path.join(converted, name)) for name in os.listdir(converted)) / 1e6
        int8 = os.path.join(directory, "ct2_int8")
        TransformersConverter(checkpoint).convert(int8, quantization="int8")
        ct2_int8_size = sum(os.path.getsize(os.path.join(int8, name)) for name in os.listdir(int8)) / 1e6
        with open(os.path.join(checkpoint, "vocab.json"), encoding="utf-8") as f:
            pieces = {i: piece for piece, i in json.load(f).items()}
        ct2_source = [pieces[int(i)] for i in source] + ["</s>"]
        ours = np.zeros((1, args.tokens), "int32")  # this project's ids of the same pieces, then its end id
        ours[0, :SOURCE_TOKENS] = source + 2
        ours[0, SOURCE_TOKENS] = 3
        rows = time_ctranslate2(converted, ct2_source, args)
        for row in rows:  # the converted directory's size, as `--quantization int8` would write it
            row["size_mb"] = round(ct2_int8_size if row["variant"].startswith("int8") else ct2_size, 1)
        rows += time_ours(run, ours, args, directory)
    for row in rows:
        row.update(measurement="ctranslate2_vs_ours", shape=shape, threads=args.threads)
        row["unit"] = "ms/token" if row["batch"] == 1 else "ms/step"
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["small"])
    parser.add_argument("--tokens", type=int, default=32, help="tokens each decoding emits (at least 17: the source)")
    parser.add_argument("--batch", type=int, default=32, help="the batched measurement's sentences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ctranslate2-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ctranslate2_child:
        return ctranslate2_child(json.loads(args.ctranslate2_child))
    rows = []
    for shape in args.shapes:
        load = os.getloadavg()[0]
        for row in measure(shape, args):
            row["load_before"] = round(load, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = ["shape", "search", "engine", "variant", "batch", "unit", "ms", "tokens", "size_mb", "load_before"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
