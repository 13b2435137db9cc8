import pytest

# Several scripts: accents, umlauts, CJK, Cyrillic, Greek, emoji, punctuation.
MULTILINGUAL = [
    "Hello, world! How are you?",
    "Grüße aus München: Ein Mädchen läuft über die Straße.",
    "Ça va? Très bien, merci — à bientôt.",
    "日本語のテキストです。東京は大きい。",
    "中文句子，没有空格。",
    "Привет, как дела?",
    "Καλημέρα κόσμε.",
    "Emoji 🎉 party 🎉! Coffee ☕ time.",
    "Numbers 12,345.67 and 3/4 of \"quotes\".",
]


@pytest.fixture(scope="session")
def corpus():
    return MULTILINGUAL * 20
