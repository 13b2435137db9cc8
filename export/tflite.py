"""TFLite (LiteRT) exporters: the whole decoding loop inside, built-in ops only.

One `.tflite` file per variant. Translation runs get the signatures
`generate` (greedy), `beam_search`, `encode` and `decode_step` (see
`export.translation_module`); sources are `(B, max_sequence_length)` int32,
padded with 0, the batch size free (`resize_tensor_input`, or the signature
runner does it). Classify, tag and lm runs get their family's signatures
(`export.family_module`). Only TFLite's built-in ops are allowed (no Flex
delegate), so the plain LiteRT interpreter (`export.interpreter`) runs them.
Every signature taking ids reads ids outside the vocabulary as the unknown
token and returns `out_of_range_ids`, `(B,)` int32, how many it replaced per
row: check it is 0 (TFLite drops assertions, so it cannot refuse them).

Variants: `tflite` (float32), `tflite_float16` (float16 weights),
`tflite_dynamic_int8` (int8 weights, activations quantized on the fly;
with `--int8-rounding gptq` a translation run's weight matrices are rounded
against the activations of its calibration sentences, see `export.gptq`),
`tflite_int8` (translation only: int8 weights and activations, calibrated on
the run's `calibration.txt` or `--data`; the attention scores' path stays
float, see `export.converter.FLOAT_IN_INT8`).
"""

import warnings

from . import pairing
from .base import Exporter, register
from .converter import CALIBRATION_SENTENCES, convert, encode_sentences
from .errors import ExportError
from .family_module import SIGNATURES as FAMILY_SIGNATURES
from .family_module import FamilyModule
from .flatbuffer import refuse_flex
from .gptq import GPTQ_SENTENCES, gptq_kernels
from .translation_module import TranslationModule

SIGNATURES = ("generate", "beam_search", "encode", "decode_step")


def build_module(model, beam_size=4, length_penalty=0.6, quantization=None, kernels=None, length_penalty_form="gnmt"):
    """A translation model's TFLite module: fixed source length, frozen weights.

    `quantization` is `convert`'s: for `"dynamic_int8"` the token embeddings
    are looked up in int8 (`module.Int8Embeddings`), so a tied table is
    stored once. `kernels`: `{kernel path: value}` to freeze instead of the
    model's own (`rounded_kernels`).
    """
    return TranslationModule(
        model,
        fixed_source_length=True,
        freeze=True,
        beam_size=beam_size,
        length_penalty=length_penalty,
        flag_out_of_range=True,
        int8_embeddings=quantization == "dynamic_int8",
        frozen_values=kernels,
        length_penalty_form=length_penalty_form,
    )


def rounded_kernels(run, options, quantization):
    """A translation run's GPTQ-rounded kernels for its dynamic-int8 file, or `None` (rounded to nearest).

    Only with `options.int8_rounding == "gptq"`.

    Calibrated on (up to `GPTQ_SENTENCES` of) `options.calibration_sentences`
    or the run's `calibration.txt` (its first training sentences); a run
    without either is rounded to nearest, with a warning. Computed once per
    run and sentences: the `.tflite` and text files of one export share them.
    """
    if quantization != "dynamic_int8" or options.int8_rounding != "gptq" or run.family != "translate":
        return None
    sentences = options.calibration_sentences or run.saved_calibration()
    if not sentences:
        warnings.warn(
            f"{run.path} has no calibration sentences ({run.directory.calibration_file} or --data): its dynamic-int8 "
            "weights are rounded to nearest instead of GPTQ.",
            stacklevel=2,
        )
        return None
    sentences = tuple(sentences)[:GPTQ_SENTENCES]
    if sentences not in run.gptq_kernels:
        from keras_transformer.translator import terminal_progress

        # Minutes for a "small" model on 2 cores: a line every 30 s in a log, a redrawn line on a terminal.
        progress = terminal_progress(label="  GPTQ calibration:")
        run.gptq_kernels[sentences] = gptq_kernels(run.model, encode_sentences(run, list(sentences)), progress=progress)
    return run.gptq_kernels[sentences]


class TFLiteExporter(Exporter):
    """A `.tflite` file of a run, quantized as `quantization` says."""

    quantization = None
    families = ("translate", "classify", "tag", "lm")

    def export(self, run, path):
        if run.family == "translate":
            module = build_module(
                run.model, self.options.beam_size, self.options.length_penalty, self.quantization,
                rounded_kernels(run, self.options, self.quantization), self.options.length_penalty_form,
            )  # fmt: skip
            signatures = SIGNATURES
        else:
            module = FamilyModule(
                run, fixed_length=True, freeze=True, flag_out_of_range=True,
                int8_embeddings=self.quantization == "dynamic_int8",
            )
            signatures = FAMILY_SIGNATURES[run.family]
        flatbuffer = convert(
            module, signatures, self.quantization, self.calibration_ids(run),
            metadata={pairing.METADATA_NAME: pairing.encoded(run)},
        )  # fmt: skip
        refuse_flex(flatbuffer, self.format)
        with open(path, "wb") as f:
            f.write(flatbuffer)

    def calibration_ids(self, run):
        return None


@register
class Float32Exporter(TFLiteExporter):
    format, filename = "tflite", "model.tflite"


@register
class Float16Exporter(TFLiteExporter):
    format, filename, quantization = "tflite_float16", "model_float16.tflite", "float16"


@register
class DynamicInt8Exporter(TFLiteExporter):
    format, filename, quantization = "tflite_dynamic_int8", "model_dynamic_int8.tflite", "dynamic_int8"


@register
class Int8Exporter(TFLiteExporter):
    """Not written by `train.py` by default: calibration is slow and its tokens drift most."""

    format, filename, quantization = "tflite_int8", "model_int8.tflite", "int8"
    families = ("translate",)
    default = False

    def calibration_ids(self, run):
        sentences = self.options.calibration_sentences or run.calibration_sentences()
        if not sentences:
            raise ExportError("tflite_int8 needs calibration sentences (the run's calibration.txt or --data).")
        return encode_sentences(run, list(sentences)[:CALIBRATION_SENTENCES])


_VARIANTS = (Float32Exporter, Float16Exporter, DynamicInt8Exporter, Int8Exporter)
VARIANTS = {cls.format: cls.filename for cls in _VARIANTS}  # format -> file name
QUANTIZATION = {cls.format: cls.quantization for cls in _VARIANTS}  # format -> `convert`'s quantization
