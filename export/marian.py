"""A translation run as a Hugging Face Marian directory: transformers, CTranslate2 and their tools read it.

`python -m export --model RUN --format marian` writes `export/marian/` with
`config.json`, `generation_config.json`, `model.safetensors`, `source.spm`,
`target.spm`, `vocab.json` (and `target_vocab.json` for separate
vocabularies) and `tokenizer_config.json`, which
`MarianMTModel.from_pretrained` and `MarianTokenizer.from_pretrained` load
and `ct2-transformers-converter --model DIR` converts. Written with numpy,
JSON and safetensors: neither torch nor transformers is needed.

What Marian can express: post-norm layers, sinusoidal positions, relu /
silu / gelu, LayerNorm epsilon 1e-5, SentencePiece tokenizers (or a run
imported from Marian). Anything else is refused naming the setting. The
paper's interleaved sinusoid is carried by permuting the model's hidden
dimensions so that Marian's `[sin | cos]` layout meets the same weights
(LayerNorm and every projection commute with the permutation): the same
model, not an approximation. Ids: Marian's end token is 0, unknown 1, and
its pad token (which also starts decoding) the last id: this project's
start row; this project's padding row is not needed.
"""

import json
import os

import numpy as np

from .base import Exporter, register
from .errors import ExportError
from keras_transformer.pretrained.marian import marian_tensors
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID, UNKNOWN_ID

ACTIVATIONS = {"relu": "relu", "silu": "swish", "swish": "swish", "gelu": "gelu", "gelu_approximate": "gelu_new"}


def _vocabulary(tokenizer, side):
    """`(pieces in Marian id order, our id of each Marian id, spm proto)` of one side."""
    if tokenizer.kind == "marian":  # imported: its own vocabulary back, as it was
        ours = {int(marian): index for index, marian in enumerate(tokenizer.order) if index != PAD_ID}
        return list(tokenizer.vocabulary), np.array([ours[m] for m in range(len(tokenizer.vocabulary))]), \
            tokenizer.proto  # fmt: skip
    if tokenizer.kind != "sentencepiece":
        raise ExportError(f"--format marian needs SentencePiece tokenizers (Marian reads source.spm and target.spm); "
                          f"the run's {side} tokenizer is {tokenizer.kind}")  # fmt: skip
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
    size = processor.get_piece_size()
    pieces = ["</s>", "<unk>"] + [processor.id_to_piece(i) for i in range(END_ID + 1, size)] + ["<pad>"]
    if len(set(pieces)) != len(pieces):
        raise ExportError(f"the {side} SentencePiece model has a piece named </s>, <unk> or <pad> besides its own "
                          "control pieces; Marian's vocabulary cannot hold it twice")  # fmt: skip
    return pieces, np.array([END_ID, UNKNOWN_ID, *range(END_ID + 1, size), START_ID]), tokenizer.proto


def _check(run):
    model, config = run.model, run.model.get_config()
    if run.family != "translate":
        raise ExportError(f"--format marian exports translation runs; {run.path} is a {run.family} run")
    refused = {
        "position": (config["position"], "sinusoidal"),
        "normalize_first": (config["normalize_first"], False),
        "layer_norm_epsilon": (config["layer_norm_epsilon"], 1e-5),
        "scale_embeddings": (config.get("scale_embeddings", True), True),
        "embedding_norm": (config.get("embedding_norm", False), False),
        "segment_vocabulary_size": (config.get("segment_vocabulary_size", 0), 0),
    }
    for name, (value, needed) in refused.items():
        if value != needed:
            raise ExportError(f"--format marian: the run has {name}={value!r}; Marian models have {name}={needed!r}")
    if run.source_tokenizer.kind != "marian":  # trained here: as Marian sources and decoders are
        if not getattr(run.source_tokenizer, "appends_end", False) or not config.get("zero_start_embedding"):
            raise ExportError(
                "--format marian: Marian ends every source with the end token and starts decoding from a zero "
                "embedding; this run was trained otherwise. Train it with --marian-compatible (train.py)"
            )
    activation = config["activation"]
    activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name", activation)
    if activation not in ACTIVATIONS:
        raise ExportError(f"--format marian: the run's activation {activation!r} is not one Marian has "
                          f"({sorted(set(ACTIVATIONS))})")  # fmt: skip
    return model, config, ACTIVATIONS[activation]


def marian_files(run):
    """`{file name: bytes or dict or {tensor name: array}}` of the Marian directory of `run` (checked)."""
    model, config, activation = _check(run)
    source, target = run.source_tokenizer, run.target_tokenizer
    joint = source is target or (source.kind == target.kind == "sentencepiece" and source.proto == target.proto) or (
        source.kind == target.kind == "marian" and source.vocabulary == target.vocabulary
    )  # fmt: skip
    source_pieces, source_ours, source_proto = _vocabulary(run.source_tokenizer, "source")
    target_pieces, target_ours, target_proto = _vocabulary(run.target_tokenizer, "target")
    shared = bool(config["share_embeddings"])
    if shared and not joint:
        raise ExportError("--format marian: the run shares one embedding between tokenizers with different vocabularies")
    d, d_ff = model.hidden_dim, model.intermediate_dim
    tensors = marian_tensors(model, source_ours, target_ours)

    pad, eos = len(target_pieces) - 1, 0
    if target_pieces[pad] != "<pad>" or target_pieces[eos] != "</s>":  # an imported vocabulary of another order
        pad, eos = target_pieces.index("<pad>"), target_pieces.index("</s>")
    marian_config = {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": len(source_pieces),
        "decoder_vocab_size": len(target_pieces),
        "share_encoder_decoder_embeddings": shared,
        "tie_word_embeddings": bool(config["tie_embeddings"]),
        "d_model": d,
        "encoder_layers": model.num_layers,
        "decoder_layers": model.num_layers,
        "encoder_attention_heads": model.num_heads,
        "decoder_attention_heads": model.num_heads,
        "encoder_ffn_dim": d_ff,
        "decoder_ffn_dim": d_ff,
        "activation_function": activation,
        "dropout": float(config["dropout"]),
        "attention_dropout": float(config["attention_dropout"]),
        "activation_dropout": float(config["activation_dropout"]),
        "max_position_embeddings": model.max_sequence_length,
        "scale_embedding": True,
        "static_position_embeddings": True,
        "normalize_before": False,
        "pad_token_id": pad,
        "decoder_start_token_id": pad,
        "eos_token_id": eos,
        "forced_eos_token_id": eos,
        "is_encoder_decoder": True,
        "dtype": "float32",
    }
    generation = {"bad_words_ids": [[pad]], "decoder_start_token_id": pad, "pad_token_id": pad, "eos_token_id": eos,
                  "forced_eos_token_id": eos, "max_length": model.max_sequence_length}  # fmt: skip
    files = {
        "config.json": marian_config,
        "generation_config.json": generation,
        "model.safetensors": tensors,
        "source.spm": source_proto,
        "target.spm": target_proto,
        "vocab.json": {piece: i for i, piece in enumerate(source_pieces)},
        "tokenizer_config.json": {
            "tokenizer_class": "MarianTokenizer", "separate_vocabs": not joint, "model_max_length":
            model.max_sequence_length, "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        },  # fmt: skip
    }
    if not joint:
        files["target_vocab.json"] = {piece: i for i, piece in enumerate(target_pieces)}
    return files


@register
class MarianExporter(Exporter):
    """`export/marian/`: a Hugging Face Marian directory (see the module notes); only when asked."""

    format, filename = "marian", "marian"
    families = ("translate",)
    default = False
    in_all = False  # not every translation run can be one: asked for by name
    writes_directory = True
    marker = "config.json"

    def export(self, run, path):
        from safetensors.numpy import save_file

        files = marian_files(run)
        os.makedirs(path)
        for name, content in files.items():
            target = os.path.join(path, name)
            if name.endswith(".safetensors"):
                save_file(content, target, metadata={"format": "pt"})
            elif isinstance(content, bytes):
                with open(target, "wb") as f:
                    f.write(content)
            else:
                with open(target, "w", encoding="utf-8") as f:
                    json.dump(content, f, ensure_ascii=False, indent=2)
