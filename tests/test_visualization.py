"""Attention pictures: the heatmap figure, readable pieces, the command line, non-Latin labels."""

import os

import numpy as np
import pytest

from keras_transformer import visualization


def _scores(layers=2, heads=3, source=5, target=4, batch=2):
    rng = np.random.default_rng(0)

    def weights(queries, keys):
        w = rng.random((batch, heads, queries, keys)).astype("float32")
        return w / w.sum(-1, keepdims=True)

    return {
        "encoder_self_attention": [weights(source, source) for _ in range(layers)],
        "decoder_self_attention": [weights(target, target) for _ in range(layers)],
        "cross_attention": [weights(target, source) for _ in range(layers)],
    }


def _panels(figure):
    """The heatmaps' axes, and the colour scale's."""
    panels = [ax for ax in figure.axes if ax.get_images()]
    (scale,) = [ax for ax in figure.axes if ax not in panels]
    return panels, scale


def test_one_panel_per_kind_layer_and_head_with_tokens_as_labels(tmp_path):
    source, target = ["Zwei", "Hunde", "##n", "laufen", "."], ["Two", "dogs", "run", "[END]"]
    figure = visualization.plot_attention(_scores(), source, target)
    axes, scale = _panels(figure)
    assert len(axes) == 3 * 2 * 3  # kinds x layers x heads
    assert scale.get_ylabel() == "attention weight" and scale.get_ylim() == (0.0, 1.0)  # one colour scale, 0 to 1
    cross = axes[-1]
    assert [t.get_text() for t in cross.get_xticklabels()] == source
    assert [t.get_text() for t in cross.get_yticklabels()] == target
    assert cross.get_title() == "cross-attention, layer 2, head 3"
    assert cross.get_images()[0].get_array().shape == (4, 5)
    figure = visualization.plot_attention(_scores(), source, target, kinds=("cross_attention",), layers=[1], heads=[0, 2])
    assert [ax.get_title() for ax in _panels(figure)[0]] == [
        "cross-attention, layer 2, head 1", "cross-attention, layer 2, head 3"
    ]  # fmt: skip
    path = visualization.save_figure(figure, str(tmp_path / "attention.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["attention.png"]  # no temporary left


def test_non_latin_labels_render_and_bad_arguments_are_refused(tmp_path):
    labels = ["Привет", "мир", "日本語", "مرحبا", "γειά"]
    figure = visualization.plot_attention(_scores(source=5, target=5), labels, labels, kinds=("encoder_self_attention",))
    visualization.save_figure(figure, str(tmp_path / "scripts.png"))  # missing glyphs: boxes, not an error
    assert "DejaVu Sans" in visualization.font_families()
    for kwargs, match in (({"kinds": ("cross",)}, "kinds"), ({"layers": [2]}, "layers"), ({"heads": [-1]}, "heads")):
        with pytest.raises(ValueError, match=match):
            visualization.plot_attention(_scores(), ["a"] * 5, ["b"] * 4, **kwargs)


def test_readable_pieces_of_wordpiece_and_sentencepiece():
    from keras_transformer.data.tokenizers import SentencePieceTokenizer, WordPieceTokenizer

    lines = ["the cat sat on the mat", "a dog ran in the park", "unbelievable things happen"] * 40
    wordpiece = WordPieceTokenizer.train(lines, 60)
    ids = wordpiece.tokenize(["unbelievable cat"]).numpy()[0]
    pieces = visualization.readable_pieces(wordpiece, [2, *ids, 3])
    assert pieces[0] == "[START]" and pieces[-1] == "[END]"
    assert "".join(p.removeprefix("##") for p in pieces[1:-1]) == "unbelievablecat"
    sentencepiece = SentencePieceTokenizer.train(lines, 28)
    ids = sentencepiece.tokenize(["unbelievable cat"]).numpy()[0]
    pieces = visualization.readable_pieces(sentencepiece, ids)
    assert all(p == "\u2581" or "\u2581" not in p for p in pieces)
    words = " ".join(p for p in pieces if p != "\u2581").replace(" ##", "").split()
    assert words == ["unbelievable", "cat"]


def test_attention_command_draws_a_run(trained_run, tmp_path, capsys):
    run = trained_run
    from keras_transformer import attention

    out = tmp_path / "attention.png"
    assert attention.cli(["--model", str(run), "Two big dogs run.", "--out", str(out), "--kinds", "cross", "encoder"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    translation, path = capsys.readouterr().out.strip().split("\n")
    assert path == str(out) and translation
    assert attention.cli(["--model", str(run), "  ", "--out", str(out)]) == 2
    assert "empty" in capsys.readouterr().err
    assert attention.cli(["--model", str(run), "Dogs.", "--layers", "9", "--out", str(out)]) == 2
    assert "--layers: the model has" in capsys.readouterr().err
    assert attention.cli(["--model", str(tmp_path / "missing"), "Dogs.", "--out", str(out)]) == 2
    # A name without a picture extension, or a directory: one line, and nothing left behind.
    capsys.readouterr()
    (tmp_path / "pictures").mkdir()
    for bad, message in ((tmp_path / "noext", "must end in the picture format"), (tmp_path / "x.docx", ".png"),
                         (tmp_path / "pictures", "is a directory")):  # fmt: skip
        assert attention.cli(["--model", str(run), "Dogs.", "--out", str(bad)]) == 2
        assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["attention.png", "pictures"] and not os.listdir(tmp_path / "pictures")
    with pytest.raises(ValueError, match="must end in the picture format"):
        visualization.save_figure(visualization.plot_attention(_scores(), ["a"] * 5, ["b"] * 4), str(tmp_path / "x"))
    assert "x" not in os.listdir(tmp_path) and not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
