"""SavedModel with serving signatures: text, token ids, teacher-forced logits.

Load with `tf.saved_model.load(path)` after `import tensorflow_text` (the
tokenizer ops); `saved_model_cli show --dir PATH --all` lists the signatures.
"""

import tensorflow as tf

from export.graphs import TranslationModule
from export.registry import register

SIGNATURES = ("translate", "translate_beam", "generate", "beam_search", "logits", "encode", "decode_step")


def build_module(run, beam_size=4, length_penalty=0.6):
    return TranslationModule(
        run.model, run.source_tokenizer, run.target_tokenizer, beam_size=beam_size, length_penalty=length_penalty
    )


@register("saved_model", "saved_model")
def export_saved_model(run, path, beam_size=4, length_penalty=0.6, **unused):
    module = build_module(run, beam_size, length_penalty)
    signatures = {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
    signatures["serving_default"] = signatures["translate"]
    tf.saved_model.save(module, path, signatures=signatures)
