"""Encoder-only (classifier, tagger, masked LM) and decoder-only (LM) models."""

import keras
import numpy as np
import pytest

import keras_transformer as kt
from tests.test_case import assert_close, to_numpy

VOCAB = 30
ARCH = dict(num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=64, dropout=0.0, max_sequence_length=16)


def backbone(**kwargs):
    return kt.TransformerEncoderModel(VOCAB, **{**ARCH, **kwargs})


def lm(**kwargs):
    return kt.TransformerLM(VOCAB, **{**ARCH, **kwargs})


@pytest.fixture
def ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(4, VOCAB, size=(3, 10)).astype("int32")
    ids[:, 0] = kt.START_ID
    ids[1, 6:] = 0
    ids[2, 3:] = 0
    return ids


def roundtrip(model, inputs, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert_close(restored(inputs), model(inputs), atol=0, rtol=0)
    return restored


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_classifier_shapes_padding_and_roundtrip(ids, pooling, tmp_path):
    model = kt.TransformerClassifier(backbone(), num_classes=3, pooling=pooling)
    logits = model(ids)
    assert tuple(logits.shape) == (3, 3) and keras.backend.standardize_dtype(logits.dtype) == "float32"
    # More padding on the right changes nothing.
    padded = np.pad(ids, [(0, 0), (0, 4)])
    assert_close(model(padded), logits, atol=1e-5)
    restored = roundtrip(model, ids, tmp_path)
    assert restored.pooling == pooling and restored.backbone.num_layers == 2


def test_tagger_and_masked_lm_shapes(ids, tmp_path):
    tagger = kt.TransformerTagger(backbone(), num_tags=5)
    assert tuple(tagger(ids).shape) == (3, 10, 5)
    roundtrip(tagger, ids, tmp_path)
    mlm = kt.TransformerMaskedLM(backbone())
    positions = np.array([[1, 2], [3, 0], [1, 1]], "int32")
    logits = mlm({"token_ids": ids, "mask_positions": positions})
    assert tuple(logits.shape) == (3, 2, VOCAB)
    # Position p's logits are the head over the backbone's vector at p.
    hidden = mlm.backbone(ids)
    expected = mlm.backbone.embedding.token_embedding(
        mlm.transform_norm(mlm.transform(hidden)), reverse=True
    )
    assert_close(logits[0, 1], expected[0, 2], atol=1e-5)
    roundtrip(mlm, {"token_ids": ids, "mask_positions": positions}, tmp_path)


# BERT's shape of the backbone: segment (token type) embeddings, a LayerNorm on the summed embeddings, a pooler.
BERT_LIKE = dict(position="learned", scale_embeddings=False, embedding_norm=True, segment_vocabulary_size=2,
                 activation="gelu", pooler=True)  # fmt: skip


def test_segments_and_pooler_roundtrip_and_segment_zero_is_the_default(ids, tmp_path):
    segments = np.zeros_like(ids)
    segments[:, 4:] = 1
    model = kt.TransformerClassifier(backbone(**BERT_LIKE), num_classes=3, pooling="pooler")
    inputs = {"token_ids": ids, "segment_ids": segments}
    restored = roundtrip(model, inputs, tmp_path)
    assert restored.backbone.pooler is not None and restored.backbone.segment_vocabulary_size == 2
    body = model.backbone
    assert_close(body(ids), body(ids, segment_ids=np.zeros_like(ids)), atol=0, rtol=0)
    assert not np.allclose(to_numpy(body(ids, segment_ids=segments)), to_numpy(body(ids)))
    hidden = body(ids, segment_ids=segments)
    expected = model.classifier_head(body.pool(hidden))  # BERT's pooled output: tanh dense over the first vector
    assert_close(model(inputs), expected, atol=1e-6)
    assert_close(model(ids), model({"token_ids": ids}), atol=0, rtol=0)
    with pytest.raises(ValueError, match="shape of `token_ids`"):
        body(ids, segment_ids=segments[:, :4])
    with pytest.raises(ValueError, match="segment_vocabulary_size=0"):
        backbone()(ids, segment_ids=segments)
    with pytest.raises(ValueError, match="needs a backbone with a pooler"):
        kt.TransformerClassifier(backbone(), num_classes=2, pooling="pooler")
    with pytest.raises(ValueError, match="may hold"):
        model({"token_ids": ids, "segments": segments})
    with pytest.raises(ValueError, match="no pooler"):
        backbone().pool(hidden)
    with pytest.raises(ValueError, match="segment_vocabulary_size"):
        backbone(segment_vocabulary_size=-1)
    # A head that does not read the pooler leaves it out of training (it would get no gradient).
    assert model.backbone.pooler.trainable
    assert not kt.TransformerTagger(backbone(**BERT_LIKE), num_tags=3).backbone.pooler.trainable
    assert not kt.TransformerClassifier(backbone(**BERT_LIKE), num_classes=2, pooling="first").backbone.pooler.trainable


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        kt.TransformerClassifier(keras.layers.Dense(3), num_classes=2)
    with pytest.raises(ValueError, match="pooling"):
        kt.TransformerClassifier(backbone(), num_classes=2, pooling="max")
    with pytest.raises(ValueError, match="num_tags"):
        kt.TransformerTagger(backbone(), num_tags=0)
    with pytest.raises(ValueError, match="divisible"):
        kt.TransformerLM(VOCAB, **{**ARCH, "num_heads": 5})
    with pytest.raises(ValueError, match="max_sequence_length"):
        backbone()(np.ones((1, 17), "int32"))
    with pytest.raises(ValueError, match="integer"):
        lm()(np.ones((1, 4), "float32"))
    with pytest.raises(ValueError, match="mask_positions"):
        kt.TransformerMaskedLM(backbone())(np.ones((1, 4), "int32"))


def test_backbone_from_transformer_equals_its_encoder(ids):
    transformer = kt.Transformer(VOCAB, 20, **ARCH, position="learned")
    encoder = kt.TransformerEncoderModel.from_transformer(transformer)
    expected, _ = transformer.encode(ids)
    assert_close(encoder(ids), expected, atol=1e-6)


# GPT-2's shape of the same model: pre-norm with a final LayerNorm, learned positions, unscaled embeddings.
GPT2_LIKE = dict(normalize_first=True, position="learned", scale_embeddings=False, activation="gelu_approximate")


@pytest.mark.parametrize("kwargs", [{}, GPT2_LIKE], ids=["paper", "gpt2_like"])
def test_language_model_is_causal_and_roundtrips(ids, tmp_path, kwargs):
    model = lm(**kwargs)
    logits = to_numpy(model(ids))
    changed = ids.copy()
    changed[:, 5:] = 7
    assert_close(model(changed)[:, :5], logits[:, :5], atol=1e-5)
    assert not np.allclose(to_numpy(model(changed))[0, 5:], logits[0, 5:])
    roundtrip(model, ids, tmp_path)
    assert model.embedding.tie_weights and not lm(tie_embeddings=False).embedding.tie_weights


@pytest.mark.parametrize("position", ["sinusoidal", "rotary", "relative", "gpt2_like"])
def test_language_model_cached_generation_equals_full_pass(position):
    model = lm(**GPT2_LIKE) if position == "gpt2_like" else lm(position=position)
    prompts = np.array([[5, 6, 7], [8, 0, 0], [0, 0, 0]], "int32")
    generated = to_numpy(model.generate(prompts, max_length=12))
    assert generated.shape == (3, 12)
    for row, length in enumerate([3, 1, 0]):
        np.testing.assert_array_equal(generated[row, :length], prompts[row, :length])
        sequence = np.concatenate([[kt.START_ID], generated[row]])
        ends = np.flatnonzero(generated[row] == kt.END_ID)
        stop = ends[0] + 1 if len(ends) else 12
        logits = to_numpy(model(sequence[None, :stop]))[0]
        logits[:, [kt.PAD_ID, kt.START_ID]] = -np.inf  # never generated
        # Each generated token is the full pass's argmax after its prefix.
        np.testing.assert_array_equal(generated[row, length:stop], logits.argmax(-1)[length:stop])
        assert (generated[row, stop:] == 0).all()


def test_language_model_sampling():
    model = lm()
    first = to_numpy(model.generate(batch_size=4, max_length=10, method="sample", top_k=5, seed=3))
    again = to_numpy(model.generate(batch_size=4, max_length=10, method="sample", top_k=5, seed=3))
    other = to_numpy(model.generate(batch_size=4, max_length=10, method="sample", top_k=5, seed=4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    greedy = to_numpy(model.generate(batch_size=2, max_length=10))
    np.testing.assert_array_equal(to_numpy(model.generate(batch_size=2, max_length=10, method="sample", top_k=1)), greedy)
    with pytest.raises(ValueError, match="method"):
        model.generate(batch_size=1, method="beam")
    with pytest.raises(ValueError, match="top_p"):
        model.generate(batch_size=1, method="sample", top_p=1.5)
    with pytest.raises(ValueError, match="more than max_length"):
        model.generate(np.ones((1, 9), "int32"), max_length=8)
