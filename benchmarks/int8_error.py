"""Where dynamic int8's token differences come from, layer group by layer group.

    python benchmarks/int8_error.py --model runs/<name> [--sentences 300] [--roundings nearest gptq]

The run's model is converted to float32 and dynamic-int8 TFLite as `export`
does (the `generate`, `encode` and `decode_step` signatures). Dynamic int8
rounds every weight matrix to int8 (per output channel) and quantizes each
matmul's input activations to int8 on the fly, row by row. To tell the two
apart, variants of the dynamic-int8 file run one group of its hybrid
`FULLY_CONNECTED` ops in float32 on their int8-rounded weights
(`export.flatbuffer.float_weights`): that group's activations are no longer
quantized, its weights still are. Groups, by weight shape: the output layer
(vocabulary x d_model), the attention projections, the feed-forward's first
and second matmuls, and all of them together ("all": only weight rounding
left, the best any activation scheme can do with these int8 weights).
Each of `--roundings` gives its own set of variants: the weights rounded to
nearest (the converter's own rounding) or by GPTQ against the run's
calibration sentences (`export.gptq`, `python -m export --int8-rounding gptq`).

Each variant is compared with the float32 file on the run's first
`--sentences` validation sentences: greedy tokens equal (free-running, up to
the later end token) and sentences equal, and the share of next-token
decisions equal when both read float32's greedy output (teacher forced),
with the mean and 99th-percentile absolute logit difference there. Prints one
JSON object per variant, then a table.
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from export.backends import TFLiteBackend  # noqa: E402
from export.base import ExportOptions  # noqa: E402
from export.converter import convert, encode_sentences  # noqa: E402
from export.flatbuffer import float_weights  # noqa: E402
from export.run import Run, read_source_lines  # noqa: E402
from export.tflite import build_module, rounded_kernels  # noqa: E402
from export.verify import _lengths, batched, format_table, token_agreement, validation_data  # noqa: E402
from keras_transformer.vocabulary import END_ID, START_ID  # noqa: E402

SIGNATURES = ("generate", "encode", "decode_step")
BATCH = 32


def groups(config):
    """Variant name -> which `(out_features, in_features)` weights run in float."""
    vocabulary, width, hidden = config["target_vocabulary_size"], config["hidden_dim"], config["intermediate_dim"]
    output = (vocabulary, width)
    first, second = (hidden, width), (width, hidden)
    return {
        "output layer": lambda shape: shape == output,
        "attention": lambda shape: shape not in (output, first, second),
        "feed-forward, first": lambda shape: shape == first,
        "feed-forward, second": lambda shape: shape == second,
        "all": lambda shape: True,
    }


def compare(path, name, ids, reference, reference_logits, decoder_ids, real, threads):
    backend = TFLiteBackend(path, name, threads)
    tokens = batched(backend.generate, ids, BATCH)
    tokens_equal, sentences_equal = token_agreement(reference, tokens)
    logits = np.concatenate(
        [backend.teacher_forced_logits(ids[i : i + BATCH], decoder_ids[i : i + BATCH]) for i in range(0, len(ids), BATCH)]
    )
    difference = np.abs(logits - reference_logits)[real]
    return {
        "variant": name,
        "token_agreement": tokens_equal,
        "sentences_equal": sentences_equal,
        "step_agreement": float(np.mean((logits.argmax(-1) == reference_logits.argmax(-1))[real])),
        "steps": int(real.sum()),
        "logit_difference_mean": float(difference.mean()),
        "logit_difference_p99": float(np.percentile(difference, 99)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a translation run directory written by train.py")
    parser.add_argument("--sentences", type=int, default=300, help="first validation sentences of the run")
    parser.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    parser.add_argument("--roundings", nargs="+", default=["nearest", "gptq"], choices=["nearest", "gptq"])
    parser.add_argument("--calibration", help="source sentences for GPTQ (default: the run's calibration.txt)")
    parser.add_argument(
        "--groups", nargs="*", default=None, help="layer groups run in float (default: all of them); none: only the files"
    )
    args = parser.parse_args()
    run = Run(args.model)
    if run.family != "translate":
        parser.error(f"{args.model} is a {run.family} run; this benchmark decodes translations.")
    chosen = groups(run.model.get_config())
    if args.groups is not None:
        unknown = sorted(set(args.groups) - set(chosen))
        if unknown:
            parser.error(f"unknown --groups {unknown}; expected some of {sorted(chosen)}")
        chosen = {name: select for name, select in chosen.items() if name in args.groups}
    calibration = tuple(read_source_lines(args.calibration)) if args.calibration else None
    sources, _ = validation_data(run, argparse.Namespace(data=None, limit=args.sentences))
    ids = encode_sentences(run, sources)
    with tempfile.TemporaryDirectory() as directory:

        def write(name, flatbuffer):
            path = os.path.join(directory, name.replace(" ", "_").replace(",", "") + ".tflite")
            with open(path, "wb") as f:
                f.write(flatbuffer)
            return path

        float32 = write("float32", convert(build_module(run.model), SIGNATURES))
        variants = {}
        for rounding in args.roundings:
            options = ExportOptions(int8_rounding=rounding, calibration_sentences=calibration)
            kernels = rounded_kernels(run, options, "dynamic_int8")
            int8 = convert(build_module(run.model, quantization="dynamic_int8", kernels=kernels), SIGNATURES, "dynamic_int8")
            variants[f"dynamic int8, {rounding}"] = (write(f"int8 {rounding}", int8), 0)
            for name, select in chosen.items():
                flatbuffer, count = float_weights(int8, select)
                variants[f"{rounding}, float: {name}"] = (write(f"{rounding} {name}", flatbuffer), count)

        reference_backend = TFLiteBackend(float32, "float32", args.threads)
        reference = batched(reference_backend.generate, ids, BATCH)
        steps = int(_lengths(reference, END_ID).max())
        decoder_ids = np.concatenate([np.full((len(ids), 1), START_ID, "int32"), reference[:, : steps - 1]], 1)
        real = np.arange(steps)[None] < _lengths(reference, END_ID)[:, None]
        reference_logits = np.concatenate(
            [
                reference_backend.teacher_forced_logits(ids[i : i + BATCH], decoder_ids[i : i + BATCH])
                for i in range(0, len(ids), BATCH)
            ]
        )
        rows = []
        for name, (path, count) in variants.items():
            row = compare(path, name, ids, reference, reference_logits, decoder_ids, real, args.threads)
            row.update(float_ops=count, sentences=len(ids))
            print(json.dumps(row), flush=True)
            rows.append(row)
    columns = [
        ("variant", "{}"), ("float_ops", "{}"), ("token_agreement", "{:.2%}"), ("sentences_equal", "{:.2%}"),
        ("step_agreement", "{:.3%}"), ("logit_difference_mean", "{:.4f}"), ("logit_difference_p99", "{:.4f}"),
    ]  # fmt: skip
    print(format_table(rows, columns))


if __name__ == "__main__":
    main()
