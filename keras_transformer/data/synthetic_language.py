"""A built-in invented language for the encoder and decoder tasks: no files.

Each sentence carries a sentiment (positive or negative) that every
sentiment-bearing word in it shares, and every word has a part-of-speech
tag. One generator serves every family:

- classification (N-to-1): a sentence's sentiment;
- tagging (N-to-N): each word's tag; some words are both nouns and verbs,
  so the tag depends on where the word stands;
- language modelling and masked-LM pre-training: the sentences as plain
  text. A model that predicts masked words learns which adjectives and
  adverbs go together, i.e. their sentiment, before it sees any label.

    the bokadi cat ruma sees a small dog   (positive: bokadi, ruma)
    DET ADJ     NOUN ADV VERB DET ADJ NOUN
"""

import re

import numpy as np

from keras_transformer.data.synthetic import SyntheticTranslationTask
from keras_transformer.vocabulary import RESERVED_TOKENS

TAGS = ["[PAD]", "DET", "ADJ", "NOUN", "VERB", "ADV", "CONJ"]
SENTIMENTS = ["negative", "positive"]
# Tag sequences of a well-formed sentence: clause (CONJ clause)?
_NOUN_PHRASE = "DET (ADJ )?NOUN"
_CLAUSE = f"{_NOUN_PHRASE} (ADV )?VERB {_NOUN_PHRASE}"
GRAMMAR = re.compile(f"^{_CLAUSE}( CONJ {_CLAUSE})?$")


class SyntheticLanguage:
    """Generator of tagged sentences with a sentiment, in an invented language.

    Args:
        num_nouns, num_verbs: lexicon sizes of the neutral words.
        num_ambiguous: words that are nouns in a noun's place, verbs in a
            verb's.
        num_adjectives, num_adverbs: sentiment words, half of each positive.
        adjective_rate, adverb_rate: how often a noun has an adjective, a
            verb an adverb.
        seed: seed of the lexicon.

    Example:
    >>> language = keras_transformer.data.SyntheticLanguage()
    >>> words, tags, sentiment = language.sentence(np.random.default_rng(0))
    """

    def __init__(self, num_nouns=60, num_verbs=40, num_ambiguous=12, num_adjectives=40, num_adverbs=16,
                 adjective_rate=0.8, adverb_rate=0.6, seed=4321):  # fmt: skip
        rng = np.random.default_rng(seed)
        self.adjective_rate, self.adverb_rate = adjective_rate, adverb_rate
        sizes = dict(noun=num_nouns, verb=num_verbs, ambiguous=num_ambiguous, adj=num_adjectives, adv=num_adverbs)
        words = SyntheticTranslationTask._invent_words(rng, sum(sizes.values()))
        self.lexicon = {}
        for kind, size in sizes.items():
            self.lexicon[kind], words = words[:size], words[size:]
        self.lexicon["det"] = ["the", "a", "this"]
        self.lexicon["conj"] = ["and", "while"]
        # Sentiment words by polarity: index 0 negative, 1 positive.
        self.adjectives = [self.lexicon["adj"][: num_adjectives // 2], self.lexicon["adj"][num_adjectives // 2 :]]
        self.adverbs = [self.lexicon["adv"][: num_adverbs // 2], self.lexicon["adv"][num_adverbs // 2 :]]
        self.vocabulary = list(RESERVED_TOKENS)
        for kind in ("det", "conj", "noun", "verb", "ambiguous", "adj", "adv"):
            self.vocabulary += self.lexicon[kind]

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def _noun_phrase(self, rng, sentiment, adjective):
        words = [(rng.choice(self.lexicon["det"]), "DET")]
        if adjective:
            words.append((rng.choice(self.adjectives[sentiment]), "ADJ"))
        nouns = self.lexicon["noun"] if rng.random() < 0.8 else self.lexicon["ambiguous"]
        return words + [(rng.choice(nouns), "NOUN")]

    def _clause(self, rng, sentiment, force):
        adjectives = rng.random(2) < self.adjective_rate
        adverb = rng.random() < self.adverb_rate
        if force and not (adjectives.any() or adverb):
            adjectives[rng.integers(2)] = True
        verbs = self.lexicon["verb"] if rng.random() < 0.8 else self.lexicon["ambiguous"]
        words = self._noun_phrase(rng, sentiment, adjectives[0])
        if adverb:
            words.append((rng.choice(self.adverbs[sentiment]), "ADV"))
        words.append((rng.choice(verbs), "VERB"))
        return words + self._noun_phrase(rng, sentiment, adjectives[1])

    def sentence(self, rng):
        """One sentence: `(words, tags, sentiment)`, sentiment 0 (negative) or 1 (positive).

        Every sentence holds at least one sentiment word.
        """
        sentiment = int(rng.integers(2))
        words = self._clause(rng, sentiment, force=True)
        if rng.random() < 0.4:
            words += [(rng.choice(self.lexicon["conj"]), "CONJ")] + self._clause(rng, sentiment, force=False)
        return [str(w) for w, _ in words], [t for _, t in words], sentiment

    def sample(self, num_sentences, seed=0):
        """`num_sentences` sentences: lists `(words, tags, sentiments)`."""
        rng = np.random.default_rng(seed)
        sentences = [self.sentence(rng) for _ in range(num_sentences)]
        return tuple(list(column) for column in zip(*sentences)) if sentences else ([], [], [])

    def texts(self, num_sentences, seed=0):
        """Plain text, one sentence per string (language modelling, pre-training)."""
        return [" ".join(words) for words in self.sample(num_sentences, seed)[0]]

    def tags_of(self, words):
        """The tag sequence of `words` when they form a well-formed sentence, else `None`.

        An ambiguous word is a noun or a verb by its place; what a generator
        outputs is checked with `is_grammatical`.
        """
        kinds = {}
        for kind, tag in (("det", "DET"), ("conj", "CONJ"), ("noun", "NOUN"), ("verb", "VERB"), ("adj", "ADJ"),
                          ("adv", "ADV")):  # fmt: skip
            kinds.update({word: tag for word in self.lexicon[kind]})
        tags = []
        for word in words:
            if word in self.lexicon["ambiguous"]:
                tags.append("VERB" if tags and tags[-1] in ("NOUN", "ADV") else "NOUN")
            elif word in kinds:
                tags.append(kinds[word])
            else:
                return None
        return tags

    def is_grammatical(self, text):
        """Whether `text` is a well-formed sentence of the language with one sentiment throughout."""
        words = text.split()
        tags = self.tags_of(words)
        if tags is None or not GRAMMAR.match(" ".join(tags)):
            return False
        polarities = {i for word in words for i in (0, 1) if word in self.adjectives[i] or word in self.adverbs[i]}
        return len(polarities) <= 1

    def config(self):
        return {"vocabulary": self.vocabulary, "tags": TAGS, "sentiments": SENTIMENTS}
