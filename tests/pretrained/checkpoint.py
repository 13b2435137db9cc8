"""Small Marian (OPUS-MT layout) checkpoints made with transformers and torch, trained briefly, for import tests.

Nothing is downloaded: the sentences come from the built-in synthetic task,
the SentencePiece models are trained on them, and a `MarianMTModel` is
trained with torch for a few hundred steps, so that greedy decoding
translates rather than repeating one token. The directory has what an
OPUS-MT download has: `config.json`, `generation_config.json` (with
OPUS-MT's `bad_words_ids: [[pad]]`), `model.safetensors`, `source.spm`,
`target.spm`, `vocab.json`, `tokenizer_config.json`.
"""

import json
import os
import tempfile

SPECIAL = ("</s>", "<unk>")


def synthetic_pairs(count, seed):
    """`count` (source, target) sentence pairs of the synthetic task, punctuated like text."""
    from keras_transformer.data import SyntheticTranslationTask

    task = SyntheticTranslationTask(
        num_nouns=10, num_adjectives=5, num_verbs=5, num_adverbs=3, num_prepositions=3, max_adjectives=1
    )
    sources, targets = task.sample(count, seed=seed)
    return [(task.source_text(s).capitalize() + ".", task.target_text(t).capitalize() + "!")
            for s, t in zip(sources, targets)]  # fmt: skip


def _train_sentencepiece(lines, prefix, vocabulary_size):
    import sentencepiece

    path = prefix + ".txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, vocab_size=vocabulary_size, model_type="unigram", hard_vocab_limit=False,
        unk_id=0, bos_id=-1, eos_id=1, pad_id=-1, minloglevel=2,
    )  # fmt: skip
    with open(prefix + ".model", "rb") as f:
        return f.read()


def make_marian_checkpoint(directory, steps=300, hidden_dim=32, num_layers=2, seed=0, pairs=None, max_length=128):
    """Write a trained Marian checkpoint into `directory`; returns the training pairs."""
    import sentencepiece
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    pairs = pairs or synthetic_pairs(2000, seed=1)
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        protos = {
            "source": _train_sentencepiece([s for s, _ in pairs], os.path.join(scratch, "source"), 200),
            "target": _train_sentencepiece([t for _, t in pairs], os.path.join(scratch, "target"), 200),
        }
    vocabulary = {piece: i for i, piece in enumerate(SPECIAL)}
    for side, proto in protos.items():
        with open(os.path.join(directory, f"{side}.spm"), "wb") as f:
            f.write(proto)
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        for i in range(processor.get_piece_size()):
            vocabulary.setdefault(processor.id_to_piece(i), len(vocabulary))
    vocabulary["<pad>"] = pad = len(vocabulary)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocabulary, f, ensure_ascii=False, indent=1)
    tokenizer = MarianTokenizer(
        os.path.join(directory, "source.spm"), os.path.join(directory, "target.spm"), os.path.join(directory, "vocab.json")
    )
    config = MarianConfig(
        vocab_size=len(vocabulary), decoder_vocab_size=len(vocabulary), d_model=hidden_dim,
        encoder_layers=num_layers, decoder_layers=num_layers, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=2 * hidden_dim, decoder_ffn_dim=2 * hidden_dim, max_position_embeddings=max_length,
        pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0, scale_embedding=True,
        activation_function="swish", dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    # As in OPUS-MT: the pad row, where decoding starts, is zeros and stays so (CTranslate2 relies on it); the tied
    # output layer would otherwise train it.
    embedding = model.model.shared.weight
    with torch.no_grad():
        embedding[pad] = 0.0
    embedding.register_hook(lambda gradient: gradient.index_fill(0, torch.tensor([pad]), 0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(pairs), (64,), generator=generator).tolist()
        batch = tokenizer([pairs[i][0] for i in rows], text_target=[pairs[i][1] for i in rows],
                          return_tensors="pt", padding=True)  # fmt: skip
        batch["labels"][batch["labels"] == pad] = -100
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # a bias that is not zero, so that importing it is tested
        model.final_logits_bias.normal_(0.0, 0.1)
    model.eval()
    model.generation_config.bad_words_ids = [[pad]]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return pairs, float(loss.detach())
