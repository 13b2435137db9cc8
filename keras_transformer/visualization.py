"""Attention heatmaps: what each head of each layer looks at (matplotlib).

`Transformer.generate(..., return_attention_scores=True)` and
`Transformer.attention_scores` give the weights; `plot_attention` draws
them, one panel per layer and head, with the tokens as tick labels:

    >>> token_ids, scores = model.generate(source_ids, return_attention_scores=True)
    >>> figure = plot_attention(scores, source_pieces, target_pieces)
    >>> save_figure(figure, "attention.png")

`python -m keras_transformer.attention` does it for a sentence and a run.
Labels are drawn with DejaVu Sans, then any installed Noto font that has the
character (CJK, Arabic, Devanagari, ...); a character no installed font has
is drawn as a box.
"""

import contextlib
import os
import warnings

import numpy as np

from keras_transformer.run_directory import temporary_prefix
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS

KINDS = ("encoder_self_attention", "decoder_self_attention", "cross_attention")
TITLES = {
    "encoder_self_attention": "encoder self-attention",
    "decoder_self_attention": "decoder self-attention",
    "cross_attention": "cross-attention",
}
# Tried in order for each character (matplotlib's per-glyph fallback); missing ones are skipped.
FONT_FALLBACK = (
    "DejaVu Sans", "Noto Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans Arabic",
    "Noto Sans Hebrew", "Noto Sans Devanagari", "Noto Sans Thai", "Noto Sans Georgian", "Noto Sans Armenian",
    "Arial Unicode MS",
)  # fmt: skip
SENTENCEPIECE_SPACE = "\u2581"


def readable_pieces(tokenizer, token_ids):
    """Tick labels for `token_ids` (one sequence): a word's first piece as is, later pieces as `##piece`.

    WordPiece pieces already read so; SentencePiece's word-start marker
    (U+2581) is dropped and its continuation pieces get `##` (a piece that
    is the marker alone is shown as it is). Reserved tokens keep their
    names (`[START]`, `[END]`, ...).
    """
    pieces, word_start = [], True
    for token_id in np.asarray(token_ids).tolist():
        piece = tokenizer.id_to_token(int(token_id))
        if piece in RESERVED_TOKENS or piece.startswith("##") or not _is_sentencepiece(tokenizer):
            pieces.append(piece)
            word_start = True
        elif piece == SENTENCEPIECE_SPACE:  # a word start of its own: the next piece begins the word
            pieces.append(piece)
            word_start = True
        elif piece.startswith(SENTENCEPIECE_SPACE):
            pieces.append(piece[1:])
            word_start = False
        else:
            pieces.append(piece if word_start else "##" + piece)
            word_start = False
    return pieces


def _is_sentencepiece(tokenizer):
    return getattr(tokenizer, "kind", None) == "sentencepiece"


def font_families():
    """The installed fonts of `FONT_FALLBACK`, in order (at least matplotlib's default)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in FONT_FALLBACK if name in installed] or ["sans-serif"]


def plot_attention(scores, source_tokens, target_tokens, kinds=KINDS, layers=None, heads=None, index=0):
    """A figure of attention heatmaps: a row per (kind, layer), a column per head.

    Args:
        scores: the dict `Transformer.attention_scores` returns (lists of
            `(B, h, query, key)` arrays per layer).
        source_tokens: labels of the source positions to show (the first
            `len(source_tokens)` keys/queries of the encoder side).
        target_tokens: labels of the target positions to show (each target
            row is the step that produced that token).
        kinds: which of `KINDS` to draw.
        layers: layer indices to draw (default all).
        heads: head indices to draw (default all).
        index: which example of the batch.

    Returns:
        A `matplotlib.figure.Figure` (no pyplot state is touched).
    """
    from matplotlib.figure import Figure

    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"`kinds` must be some of {KINDS}. Received: {kinds}")
    num_layers = len(scores[kinds[0]])
    layers = list(range(num_layers)) if layers is None else list(layers)
    if not layers or any(not 0 <= layer < num_layers for layer in layers):
        raise ValueError(f"`layers` must be in [0, {num_layers}). Received: {layers}")
    num_heads = int(np.shape(scores[kinds[0]][0])[1])
    heads = list(range(num_heads)) if heads is None else list(heads)
    if not heads or any(not 0 <= head < num_heads for head in heads):
        raise ValueError(f"`heads` must be in [0, {num_heads}). Received: {heads}")
    labels = {
        "encoder_self_attention": (source_tokens, source_tokens),
        "decoder_self_attention": (target_tokens, target_tokens),
        "cross_attention": (target_tokens, source_tokens),
    }
    panels = [(kind, layer) for kind in kinds for layer in layers]
    longest = max(len(source_tokens), len(target_tokens), 1)
    size = min(max(2.5, 0.28 * longest + 1.2), 8.0)  # inches per panel
    fontsize = max(4, min(8, int(180 / longest)))
    figure = Figure(figsize=(size * len(heads), size * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), len(heads), squeeze=False)
    families = font_families()
    image = None
    for row, (kind, layer) in enumerate(panels):
        queries, keys = labels[kind]
        weights = np.asarray(scores[kind][layer], dtype="float32")[index]
        for column, head in enumerate(heads):
            ax = axes[row][column]
            image = ax.imshow(
                weights[head, : len(queries), : len(keys)], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto"
            )
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels(keys, rotation=90, fontsize=fontsize, fontfamily=families)
            ax.set_yticks(range(len(queries)))
            ax.set_yticklabels(queries, fontsize=fontsize, fontfamily=families)
            ax.set_title(f"{TITLES[kind]}, layer {layer + 1}, head {head + 1}", fontsize=9)
    # One colour scale for every panel: they share vmin 0 and vmax 1 (each query's weights sum to 1).
    colorbar = figure.colorbar(image, ax=axes, shrink=min(1.0, 3.0 / size), aspect=30, pad=0.02)
    colorbar.set_label("attention weight", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    return figure


def attention_figure(translator, sentence, kinds=("cross_attention",), layers=None, heads=None):
    """`(figure, translation)`: the heatmaps of `sentence` under `translator`'s model (greedy decoding).

    Args:
        translator: a `keras_transformer.Translator` (its model, tokenizers
            and `max_length`).
        sentence: the source text.
        kinds, layers, heads: as `plot_attention` takes them (from 0).
    """
    if not sentence.strip():
        raise ValueError("The sentence is empty: there is no attention to draw.")
    source_ids = np.asarray(translator.source_ids([sentence]))
    target_ids, scores = translator.model.generate(
        source_ids, max_length=translator.max_length, return_attention_scores=True
    )
    target_ids = np.asarray(target_ids)[0]
    source = source_ids[0][source_ids[0] != PAD_ID]
    ends = np.flatnonzero(target_ids == END_ID)
    target = target_ids[: ends[0] + 1] if len(ends) else target_ids
    figure = plot_attention(
        scores,
        readable_pieces(translator.source_tokenizer, source),
        readable_pieces(translator.target_tokenizer, target),
        kinds=kinds,
        layers=layers,
        heads=heads,
    )
    translation = translator.target_tokenizer.detokenize(target_ids[None]).numpy()[0].decode("utf-8")
    return figure, translation


def figure_png(figure, dpi=100):
    """`figure` as PNG bytes (for TensorBoard images)."""
    import io

    buffer = io.BytesIO()
    with _missing_glyphs_as_boxes():
        figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


@contextlib.contextmanager
def _missing_glyphs_as_boxes():
    """A character no installed font has is drawn as a box; matplotlib would warn once per glyph."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        yield


def figure_format(path):
    """The picture format `path` asks for by its extension (`"png"`, `"svg"`, ...), checked before any work.

    Raises:
        ValueError: `path` is a directory, has no extension, or one
            matplotlib cannot write.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give a file name such as {os.path.join(path, 'attention.png')}.")
    extension = os.path.splitext(os.path.basename(path))[1].lower().lstrip(".")
    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if extension not in supported:
        raise ValueError(
            f"{path} must end in the picture format to write: .{', .'.join(supported)}. Received: {path!r}"
        )
    return extension


def save_figure(figure, path, dpi=100):
    """Write `figure` to `path` (the format from its extension) through a temporary file and a rename."""
    path = os.fspath(path)
    kind = figure_format(path)
    directory = os.path.dirname(os.path.abspath(path))
    base, extension = os.path.splitext(os.path.basename(path))
    temporary = os.path.join(directory, f"{temporary_prefix()}{base}{extension}")
    try:
        with _missing_glyphs_as_boxes():
            figure.savefig(temporary, dpi=dpi, format=kind)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path

