"""What an app does with the exported `.tflite`, in Python.

    python -m export.run_tflite --model runs/<name> [--tflite FILE] "A sentence." ...
    echo "A sentence." | python -m export.run_tflite --model runs/<name>

Loads the model with the LiteRT interpreter (`ai_edge_litert`, no Flex
delegate), tokenizes with the run's saved vocabulary, pads to the model's
fixed source length, runs the `generate` signature (the whole greedy loop),
detokenizes and prints one translation per line. Given a text variant
(`--tflite .../model_text.tflite`), it passes the text straight to the
`translate` signature, with tensorflow-text's kernels registered.
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


if __name__ == "__main__":
    main()
