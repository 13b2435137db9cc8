import pytest
import sacrebleu

from keras_transformer.evaluation import corpus_scores

HYPOTHESES = ["The cat sat on the mat.", "A dog runs in the park", "Ein Mädchen läuft."]
REFERENCES = ["The cat sat on a mat.", "A dog is running in the park.", "Ein Mädchen läuft."]


def test_scores_equal_sacrebleus_own_figures():
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score)
    lowercased = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], lowercase=True).score
    assert scores["bleu_lowercase"] == pytest.approx(lowercased)
    assert corpus_scores(["the cat sat on the mat."], ["The Cat sat on the Mat."])["bleu_lowercase"] == pytest.approx(100.0)
    assert scores["bleu_signature"].startswith("nrefs:1")
    assert corpus_scores(REFERENCES, REFERENCES)["bleu"] == pytest.approx(100.0)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 hypotheses for 3 references"):
        corpus_scores(HYPOTHESES[:2], REFERENCES)
