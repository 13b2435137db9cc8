"""SavedModel with serving signatures: text, token ids, teacher-forced logits.

Load with `tf.saved_model.load(path)` after `import tensorflow_text` (the
tokenizer ops); `saved_model_cli show --dir PATH --all` lists the signatures.
Translation runs: `translate` (= `serving_default`), `translate_beam`,
`generate`, `beam_search`, `logits`, `encode`, `decode_step`
(`export.translation_module`). Classify, tag and lm runs: their family's
signatures and a text-in one (`export.family_module`).
"""

import tensorflow as tf

from export.base import Exporter, register
from export.family_module import SIGNATURES as FAMILY_SIGNATURES
from export.family_module import TEXT_SIGNATURES, FamilyModule
from export.translation_module import TranslationModule

SIGNATURES = ("translate", "translate_beam", "generate", "beam_search", "logits", "encode", "decode_step")


@register
class SavedModelExporter(Exporter):
    format, filename = "saved_model", "saved_model"
    families = ("translate", "classify", "tag", "lm")
    writes_directory = True

    def export(self, run, path):
        if run.family == "translate":
            module = TranslationModule(
                run.model, run.source_tokenizer, run.target_tokenizer,
                beam_size=self.options.beam_size, length_penalty=self.options.length_penalty,
            )  # fmt: skip
            names = SIGNATURES
        else:
            module = FamilyModule(run, text=True)
            names = FAMILY_SIGNATURES[run.family] + (TEXT_SIGNATURES[run.family],)
        signatures = {name: getattr(module, name).get_concrete_function() for name in names}
        signatures["serving_default"] = signatures[names[0]]
        tf.saved_model.save(module, path, signatures=signatures)
