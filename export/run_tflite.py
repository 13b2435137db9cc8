"""What an app does with the exported `.tflite`, in Python.

    python -m export.run_tflite --model runs/<name> [--tflite FILE] "A sentence." ...
    echo "A sentence." | python -m export.run_tflite --model runs/<name>

Loads the model with the LiteRT interpreter (`ai_edge_litert`, no Flex
delegate), tokenizes with the run's saved vocabulary, pads to the model's
fixed source length, runs the `generate` signature (the whole greedy loop),
detokenizes and prints one translation per line. Given a text variant
(`--tflite .../model_text.tflite`), it passes the text straight to the
`translate` signature, with tensorflow-text's kernels registered.

A classify run's file prints each line's label and its probability (tab
between), a tag run's one tag per word, a language model's `generate`
the continuation of each line (the prompt); their text files
(`classify_text`, `tag_text`) take the text as it is.
"""

import argparse
import os

from keras_transformer import commands, quiet


def main(argv=None):
    if argv is None:  # the command itself, not a caller in Python
        quiet.filter_process_stderr()
    parser = argparse.ArgumentParser(
        prog=commands.name("run_tflite"), description=commands.named(__doc__), formatter_class=commands.HelpFormatter
    )
    parser.add_argument("--model", required=True, help="the run directory (for its tokenizers)")
    parser.add_argument("--tflite", help="the .tflite file (default: <model>/export/model.tflite)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the LiteRT interpreter")
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: standard input)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from .interpreter import interpreter as make_interpreter
    from .tflite import VARIANTS
    from keras_transformer.run_directory import RunDirectory
    from keras_transformer.data.tokenizers import model_ids

    try:
        run = RunDirectory(args.model)
    except FileNotFoundError as error:
        parser.error(str(error))
    path = args.tflite or os.path.join(run.export_dir, VARIANTS["tflite"])
    if not os.path.isfile(path):
        parser.error(f"{path} does not exist: run {commands.name('export')} --model {args.model} --format tflite first.")
    from .errors import ExportError

    try:
        interpreter = make_interpreter(path, num_threads=args.threads)  # with tensorflow-text's kernels
    except ExportError as error:
        parser.error(str(error))
    from keras_transformer.translate import read_stdin

    sentences = args.sentences or read_stdin()  # one output line per input line, whatever bytes it holds
    try:
        family = run.read_json(run.config_file).get("task", {}).get("family", "translate")
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if family != "translate":
        return run_family(parser, args, run, family, interpreter, path, sentences)
    if "translate" in interpreter.get_signature_list():  # a text-in/text-out variant: no tokenizer needed
        translate = interpreter.get_signature_runner("translate")
        for sentence in sentences:
            text = np.array([sentence.encode("utf-8")], dtype=object)
            print(translate(text=text)["translation"][0].decode("utf-8"))
        return

    from . import pairing

    try:
        source_tokenizer, target_tokenizer = run.load_tokenizers()
        pairing.check(args.model, pairing.fingerprints(source_tokenizer, target_tokenizer), path)  # another run's file
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    generate = interpreter.get_signature_runner("generate")
    max_length = int(generate.get_input_details()["encoder_token_ids"]["shape"][1])
    for sentence in sentences:
        if not sentence.strip():
            print("")
            continue
        pieces = source_tokenizer.tokenize(tf.constant([sentence]))  # longer: truncated
        ids = model_ids(source_tokenizer, pieces, max_length, full=True).numpy().astype(np.int32)
        tokens = generate(encoder_token_ids=ids)["token_ids"]
        if tokens.size and int(tokens.max()) >= target_tokenizer.vocabulary_size:  # a file exported before records
            parser.error(
                f"{path} gave token id {int(tokens.max())}, past {args.model}'s target vocabulary "
                f"({target_tokenizer.vocabulary_size} pieces): it was exported from another run; pass that run (--model)."
            )
        print(target_tokenizer.detokenize(tokens).numpy()[0].decode("utf-8"))


def run_family(parser, args, run, family, interpreter, path, sentences):
    """A classify, tag or lm run's file: a label and its probability, tags, or a continuation per line."""
    import numpy as np
    import tensorflow as tf

    from . import pairing
    from keras_transformer.data import families

    signatures = interpreter.get_signature_list()
    if family == "classify" and "classify_text" in signatures:
        classify = interpreter.get_signature_runner("classify_text")
        for sentence in sentences:
            outputs = classify(text=np.array([sentence.encode("utf-8")], dtype=object))
            print(f"{outputs['label'][0].decode('utf-8')}\t{outputs['probabilities'][0].max():.4f}")
        return
    if family == "tag" and "tag_text" in signatures:
        tag = interpreter.get_signature_runner("tag_text")
        for sentence in sentences:
            tags = tag(text=np.array([sentence.encode("utf-8")], dtype=object))["tags"][0]
            print(" ".join(t.decode("utf-8") for t in tags if t))
        return
    signature = {"classify": "classify", "tag": "tag", "lm": "generate"}.get(family)
    if signature not in signatures:
        parser.error(f"{path} has no {signature or 'runnable'} signature for a {family} run "
                     f"(signatures: {', '.join(signatures) or 'none'})")  # fmt: skip
    try:
        tokenizer, target = run.load_tokenizers()
        pairing.check(args.model, pairing.fingerprints(tokenizer, target), path)  # another run's file
        labels = run.read_json(run.config_file)["task"].get("labels")
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    runner = interpreter.get_signature_runner(signature)
    name = "prompt_ids" if family == "lm" else "token_ids"
    length = int(runner.get_input_details()[name]["shape"][1])
    for sentence in sentences:
        ids = np.zeros((1, length), np.int32)
        if family == "classify":
            row = families.encoder_inputs(tokenizer, [sentence], length)[0]
            ids[0, : len(row)] = row
            probabilities = runner(token_ids=ids)["probabilities"][0]
            print(f"{labels[int(probabilities.argmax())]}\t{probabilities.max():.4f}")
        elif family == "tag":
            words = sentence.split()[: length - 2]
            row = [families.START_ID, *families.word_ids(tokenizer, [words])[0], families.END_ID]
            ids[0, : len(row)] = row
            tag_ids = runner(token_ids=ids)["tag_ids"][0]
            print(" ".join(labels[int(i)] for i in tag_ids[1 : len(words) + 1]))
        else:
            prompt = tokenizer.tokenize(tf.constant([sentence])).to_list()[0][: length - 1]
            ids[0, : len(prompt)] = prompt
            tokens = runner(prompt_ids=ids)["token_ids"]
            print(tokenizer.detokenize(tokens).numpy()[0].decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
