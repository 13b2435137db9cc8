"""SavedModel with serving signatures: text, token ids, teacher-forced logits.

Written as `export/saved_model/<version>/` (version 1 unless `--version`),
the layout TensorFlow Serving reads (`--model_base_path=.../saved_model`);
exporting another version adds a directory beside the others. Load with
`tf.saved_model.load(latest_version(path))` after `import tensorflow_text`
(the tokenizer ops); `saved_model_cli show --dir PATH/1 --all` lists the
signatures. Translation runs: `translate_beam` (= `serving_default`: beam
search, the decoding the README's BLEU is quoted for), `translate` (greedy),
`generate`, `beam_search`, `logits`, `encode`, `decode_step`
(`export.translation_module`). Classify, tag and lm runs: their family's
signatures and a text-in one (`export.family_module`).
"""

import os

import tensorflow as tf

from . import pairing
from .base import Exporter, register
from .family_module import SIGNATURES as FAMILY_SIGNATURES
from .family_module import TEXT_SIGNATURES, FamilyModule
from .translation_module import TranslationModule

SIGNATURES = ("translate", "translate_beam", "generate", "beam_search", "logits", "encode", "decode_step")
SERVING_DEFAULT = {"translate": "translate_beam"}  # family -> signature; otherwise the family's first


def latest_version(path):
    """The SavedModel under `path`: its highest numbered version directory holding one, or `path` if it is one."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    names = os.listdir(path) if os.path.isdir(path) else []
    versions = [name for name in names if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{path} holds no SavedModel version directory (e.g. {path}/1/saved_model.pb).")
    return os.path.join(path, max(versions, key=int))


@register
class SavedModelExporter(Exporter):
    format, filename = "saved_model", "saved_model"
    families = ("translate", "classify", "tag", "lm")
    writes_directory = True

    def target(self, out):
        return os.path.join(out, self.filename, str(self.options.version))

    def export(self, run, path):
        if run.family == "translate":
            module = TranslationModule(
                run.model, run.source_tokenizer, run.target_tokenizer,
                beam_size=self.options.beam_size, length_penalty=self.options.length_penalty,
                length_penalty_form=self.options.length_penalty_form,
            )  # fmt: skip
            names = SIGNATURES
        else:
            module = FamilyModule(run, text=True)
            names = FAMILY_SIGNATURES[run.family] + (TEXT_SIGNATURES[run.family],)
        signatures = {name: getattr(module, name).get_concrete_function() for name in names}
        signatures["serving_default"] = signatures[SERVING_DEFAULT.get(run.family, names[0])]
        tf.saved_model.save(module, path, signatures=signatures)
        pairing.write_saved_model_record(run, path)
