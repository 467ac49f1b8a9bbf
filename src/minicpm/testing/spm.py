"""A real SentencePiece ``tokenizer.model`` trained at test time (MiniCPM-2B and MiniCPM-V ship
one, not a tokenizer.json): BPE with byte fallback, BOS 1 / EOS 2 / UNK 0, and user-defined
pieces (``<用户>``, ``<AI>``, MiniCPM-V's image markers) that always stay whole."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

WORDS = ("hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "fast", "slow",
         "red", "blue", "green", "one", "two", "three", "is", "and", "what", "picture", "plot")


def write_sentencepiece(folder: str | Path, vocab_size: int = 400,
                        user_defined: Sequence[str] = ("<用户>", "<AI>"),
                        words: Sequence[str] = WORDS) -> Path:
    """Train ``folder/tokenizer.model`` on a small random corpus of ``words`` (plus 你好 世界,
    so that byte fallback and whole CJK pieces both occur) and write tokenizer_config.json."""
    import sentencepiece as spm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(list(words), 8)) for _ in range(200)]
    corpus.write_text("\n".join(lines) + "\n你好 世界\n", "utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, user_defined_symbols=list(user_defined),
        hard_vocab_limit=False, minloglevel=2, bos_id=1, eos_id=2, unk_id=0)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}), "utf-8")
    return folder / "tokenizer.model"
