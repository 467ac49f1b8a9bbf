"""What a llama.cpp model's vocabulary says beyond tokenizing: its fill-in-the-middle tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..completion import FimTokens


def read_fim_tokens(lib: Any, vocab: Any, piece: Callable[[int, bool], bytes]
                    ) -> FimTokens | None:
    """From the GGUF tokenizer: ``tokenizer.ggml.fim_*`` ids, or the vocabulary texts llama.cpp
    recognises (``<|fim_prefix|>``, ``<PRE>``…); None when the model has none. ``piece(id,
    special)`` is the backend's token → bytes."""
    ids = (lib.llama_vocab_fim_pre(vocab), lib.llama_vocab_fim_suf(vocab),
           lib.llama_vocab_fim_mid(vocab))
    if any(i is None or i < 0 for i in ids):
        return None
    texts = [piece(i, True).decode("utf-8", errors="replace") for i in ids]
    return FimTokens(*texts) if all(texts) else None
