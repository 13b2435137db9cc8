"""Compare the Keras model with its SavedModel and every TFLite variant.

    python -m export.verify --model runs/<name> [--data src.txt ref.txt] [--limit N]

On the same source sentences (the run's validation set by default), for each
artifact under `<model>/export/`: greedy token agreement with Keras (positions
up to the later end token, and whole sentences), the largest logit difference
along Keras's greedy output and the share of those steps with the same
arg-max (teacher-forced, first sentences), BLEU and chrF
against the references, file size, and milliseconds per sentence at batch 1.
Text-in/text-out variants are compared on text: translations equal to the
Keras model's, BLEU, chrF, size and milliseconds per sentence (tokenizing
included).
Prints a table and writes JSON (`<export dir>/verify.json` by default).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

from keras_transformer import commands, quiet

from keras_transformer.run_directory import write_json

from keras_transformer.vocabulary import END_ID, START_ID


def _lengths(tokens, end_id):
    is_end = tokens == end_id
    return np.where(is_end.any(1), is_end.argmax(1) + 1, tokens.shape[1])


def token_agreement(reference, tokens, end_id=END_ID):
    """Share of positions (up to the later end token of each pair) and of whole rows that agree."""
    lengths = np.maximum(_lengths(reference, end_id), _lengths(tokens, end_id))
    positions = np.arange(reference.shape[1])[None] < lengths[:, None]
    equal = (reference == tokens) & positions
    return float(equal.sum() / positions.sum()), float(np.mean(equal.sum(1) == positions.sum(1)))


def measure_text(backend, sources, reference_hypotheses, references, args):
    """Sentences equal to the Keras translations, BLEU/chrF and ms per sentence of a text backend."""
    from .base import artifact_size
    from keras_transformer.evaluation import corpus_scores

    result = {"artifact": backend.name, "size_mb": round(artifact_size(backend.path) / 1e6, 3)}
    hypotheses = [h for i in range(0, len(sources), args.batch_size) for h in backend.translate(sources[i : i + args.batch_size])]
    result["sentences_equal"] = float(np.mean([a == b for a, b in zip(hypotheses, reference_hypotheses)]))
    if references is not None:
        result.update({k: round(v, 2) for k, v in corpus_scores(hypotheses, references).items() if isinstance(v, float)})
    count = min(args.latency_sentences, len(sources))
    backend.translate(sources[:1])
    times = []
    for sentence in sources[:count]:
        start = time.perf_counter()
        backend.translate([sentence])
        times.append((time.perf_counter() - start) * 1000)
    result["ms_per_sentence"] = round(statistics.mean(times), 2)
    return result


def batched(function, ids, batch_size):
    return np.concatenate([function(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])


def measure(backend, ids, reference_tokens, detokenize, references, args, start_id=START_ID, end_id=END_ID):
    from .base import artifact_size

    result = {"artifact": backend.name}
    path = getattr(backend, "path", None)
    if path:
        result["size_mb"] = round(artifact_size(path) / 1e6, 3)
    tokens = batched(backend.generate, ids, args.batch_size)
    if reference_tokens is not None:
        result["token_agreement"], result["sentences_equal"] = token_agreement(reference_tokens, tokens, end_id)
        # Teacher-forced along Keras's greedy output, on the first sentences.
        n = min(args.logit_sentences, len(ids))
        steps = int(_lengths(reference_tokens[:n], end_id).max())
        decoder_ids = np.concatenate([np.full((n, 1), start_id, "int32"), reference_tokens[:n, : steps - 1]], 1)
        logits = backend.teacher_forced_logits(ids[:n], decoder_ids)
        keras_logits = args.keras_logits(ids[:n], decoder_ids)
        real = np.arange(steps)[None] < _lengths(reference_tokens[:n], end_id)[:, None]
        result["max_logit_difference"] = float(np.abs(logits - keras_logits)[real].max())
        # The same next-token decision given the same prefix: free-running greedy agreement above
        # counts every token after a first difference as different too.
        result["step_agreement"] = float(np.mean((logits.argmax(-1) == keras_logits.argmax(-1))[real]))
    hypotheses = detokenize(tokens)
    if references is not None:
        from keras_transformer.evaluation import corpus_scores

        result.update({k: round(v, 2) for k, v in corpus_scores(hypotheses, references).items() if isinstance(v, float)})
    times = []
    count = min(args.latency_sentences, len(ids))
    backend.generate(ids[:1])  # warm-up (compilation, allocation)
    for i in range(count):
        start = time.perf_counter()
        backend.generate(ids[i : i + 1])
        times.append((time.perf_counter() - start) * 1000)
    generated = int(_lengths(tokens[:count], end_id).sum())
    result["ms_per_sentence"] = round(statistics.mean(times), 2)
    result["ms_per_token"] = round(sum(times) / max(generated, 1), 3)
    return result, tokens, hypotheses


def format_table(rows, columns=None):
    columns = columns or [
        ("artifact", "{}"), ("size_mb", "{:.2f}"), ("token_agreement", "{:.2%}"), ("sentences_equal", "{:.2%}"),
        ("max_logit_difference", "{:.2e}"), ("step_agreement", "{:.2%}"), ("bleu", "{:.2f}"), ("chrf", "{:.2f}"),
        ("ms_per_sentence", "{:.1f}"), ("ms_per_token", "{:.3f}"),
    ]  # fmt: skip
    header = [name for name, _ in columns]
    lines = [header] + [
        [fmt.format(row[name]) if row.get(name) is not None else "-" for name, fmt in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=commands.name("verify"), description=commands.named(__doc__), formatter_class=commands.HelpFormatter
    )
    parser.add_argument("--model", required=True, help="a run directory written by train.py")
    parser.add_argument(
        "--data", nargs=2, metavar=("SRC", "REF"),
        help="translation runs: sources and references, one per line, plain or gzip (default: the run's validation "
        "files for a text run, 500 fresh sentences of the built-in task for a synthetic run); classify, tag and lm "
        "runs are compared on 64 inputs made from their vocabulary",
    )  # fmt: skip
    parser.add_argument("--export-dir", help="where the artifacts are (default: <model>/export)")
    parser.add_argument("--limit", type=int, help="use the first N sentences only")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for the agreement/BLEU pass")
    parser.add_argument("--latency-sentences", type=int, default=50, help="sentences timed one by one")
    parser.add_argument("--logit-sentences", type=int, default=8, help="sentences for the logit comparison")
    parser.add_argument("--threads", type=int, default=2, help="threads of each TFLite interpreter")
    parser.add_argument("--json", help="where to write the results (default: <export dir>/verify.json)")
    return parser.parse_args(argv)


def validation_data(run, args):
    from keras_transformer.data.readers import read_parallel

    if args.data:
        sources, references, _ = read_parallel(*args.data)
    else:
        task = run.config.get("task", {})
        validation = task.get("validation") or [None, None, None]
        if task.get("name") == "text" and any(validation):
            sources, references, _ = read_parallel(*validation)
        elif task.get("imported"):
            raise ValueError(f"{run.path} was imported (not trained here) and has no validation sentences: give "
                             "some with --data SRC REF")  # fmt: skip
        else:  # a synthetic run: fresh sentences of its task
            from keras_transformer.data.synthetic import SyntheticTranslationTask

            synthetic = SyntheticTranslationTask()
            source_ids, target_ids = synthetic.sample(args.limit or 500, seed=12345)
            sources = [synthetic.source_text(ids) for ids in source_ids]
            references = [synthetic.target_text(ids) for ids in target_ids]
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    return sources, references


def main(argv=None):
    from .converter import encode_sentences
    from .run import Run
    from .tflite import VARIANTS
    from .tflite_text import VARIANTS as TEXT_VARIANTS

    args = parse_args(argv)
    run = Run(args.model)
    export_dir = args.export_dir or run.default_out
    if run.family != "translate":
        return verify_family(run, export_dir, args)
    sources, references = validation_data(run, args)
    ids = encode_sentences(run, sources)

    def detokenize(tokens):
        return [t.decode("utf-8") for t in run.target_tokenizer.detokenize(tokens).numpy()]

    from .backends import KerasBackend, SavedModelBackend, TFLiteBackend, TFLiteTextBackend
    from .saved_model import latest_version

    keras_backend = KerasBackend(run.model)
    args.keras_logits = keras_backend.teacher_forced_logits
    backends = [keras_backend]
    if os.path.isdir(os.path.join(export_dir, "saved_model")):
        backends.append(SavedModelBackend(latest_version(os.path.join(export_dir, "saved_model"))))
    for variant, filename in VARIANTS.items():
        if os.path.isfile(os.path.join(export_dir, filename)):
            backends.append(TFLiteBackend(os.path.join(export_dir, filename), variant, args.threads))
    if len(backends) == 1:
        print(f"warning: no exported artifact in {export_dir}; run {commands.name('export')} first.", file=sys.stderr)
    for variant, filename in TEXT_VARIANTS.items():
        if os.path.isfile(os.path.join(export_dir, filename)):
            backends.append(TFLiteTextBackend(os.path.join(export_dir, filename), variant, args.threads))
    check_paired(run, [backend.path for backend in backends[1:]])
    rows, reference_tokens, reference_hypotheses = [], None, None
    for backend in backends:
        if isinstance(backend, TFLiteTextBackend):
            row = measure_text(backend, sources, reference_hypotheses, references, args)
        else:
            row, tokens, hypotheses = measure(backend, ids, reference_tokens, detokenize, references, args)
            if reference_tokens is None:
                reference_tokens, reference_hypotheses = tokens, hypotheses
                row.update(token_agreement=1.0, sentences_equal=1.0, max_logit_difference=0.0, step_agreement=1.0)
        rows.append(row)
        print(f"{backend.name}: done", file=sys.stderr)
    print(format_table(rows))
    path = args.json or os.path.join(export_dir, "verify.json")
    write_json(path, {"model": run.path, "sentences": len(sources), "results": rows})
    print(f"Written: {path}")
    return rows


def check_paired(run, artifacts):
    """Refuse artifacts exported from a run with other tokenizers; note those of an older model (`export.pairing`)."""
    from . import pairing

    model_file = run.directory.file(run.directory.model_file)
    expected = pairing.fingerprints(run.source_tokenizer, run.target_tokenizer, model_file)
    for artifact in artifacts:
        pairing.check(run.path, expected, artifact, warn=lambda line: print(line, file=sys.stderr))


def verify_family(run, export_dir, args):
    """A classify, tag or lm run: every artifact against Keras on generated inputs."""
    from .verify_families import COLUMNS, verify

    rows = verify(run, export_dir, count=args.limit or 64, threads=args.threads, check=check_paired)
    if len(rows) == 1:
        print(f"warning: no exported artifact in {export_dir}; run {commands.name('export')} first.", file=sys.stderr)
    print(format_table(rows, COLUMNS))
    path = args.json or os.path.join(export_dir, "verify.json")
    write_json(path, {"model": run.path, "family": run.family, "results": rows})
    print(f"Written: {path}")
    return rows


def cli(argv=None):
    from .errors import exit_code

    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    return exit_code(main, commands.name("verify"), argv)


if __name__ == "__main__":
    sys.exit(cli())
