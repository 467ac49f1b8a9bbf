"""The tiny models' tokenizer: a SentencePiece-style vocabulary (``▁`` for spaces, ``<0xNN>``
byte fallback, BOS ``<s>``, EOS ``</s>``, MiniCPM's ``<用户>`` / ``<AI>`` as user-defined tokens)
and its Hugging Face ``tokenizer.json``. Every multi-character piece is ``▁`` plus a word prefix,
so a piece can be reached by exactly one merge; that makes llama.cpp's SPM (score-driven bigram
merges) and the ``tokenizers`` BPE (rank-driven merges) produce the same ids for the same text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: MiniCPM-2B-sft's chat template, as its tokenizer_config.json carries it.
MINICPM_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{'<用户>' + message['content'].strip() + '<AI>'}}"
    "{% else %}{{message['content'].strip()}}{% endif %}{% endfor %}"
)


SPACE = "▁"
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
USER_DEFINED_TOKENS = ("<用户>", "<AI>")
_WORDS = ("the", "and", "that", "this", "with", "hello", "world", "def", "return", "import",
          "print", "error", "python", "data", "plot", "model", "value", "is", "of", "to", "in",
          "it", "a", "what", "how", "why", "you", "for", "not", "list")
_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
          ".,:;!?'\"()[]{}<>=+-*/_#%&@$\\|`~^")

# Token types as GGUF / SentencePiece number them.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class TinyVocab:
    """The pieces (id order), their SentencePiece scores and types, and the BPE merges that
    reach every multi-character piece."""

    pieces: list[str]
    scores: list[float]
    types: list[int]
    merges: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def bos_id(self) -> int:
        return self.pieces.index("<s>")

    @property
    def eos_id(self) -> int:
        return self.pieces.index("</s>")

    @property
    def unk_id(self) -> int:
        return self.pieces.index("<unk>")


def tiny_vocab(size: int = 512) -> TinyVocab:
    """A SentencePiece-style vocabulary of exactly ``size`` pieces: <unk>, <s>, </s>, the 256
    byte tokens, <用户>, <AI>, ▁ and single characters, ``▁``+prefix pieces of common words
    (score falls with id, as in SentencePiece), and unreachable ``<unused…>`` padding."""
    pieces: list[str] = list(SPECIAL_TOKENS)
    types = [UNKNOWN, CONTROL, CONTROL]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    pieces += list(USER_DEFINED_TOKENS)
    types += [USER_DEFINED] * len(USER_DEFINED_TOKENS)
    normal: list[str] = [SPACE, *_CHARS]
    merges: list[tuple[str, str]] = []
    seen = set(normal)
    for word in _WORDS:
        for n in range(1, len(word) + 1):
            piece = SPACE + word[:n]
            if piece not in seen:
                seen.add(piece)
                normal.append(piece)
                merges.append((piece[:-1], piece[-1]))
    pieces += normal
    types += [NORMAL] * len(normal)
    if len(pieces) > size:
        raise ValueError(f"the tiny vocabulary needs at least {len(pieces)} tokens, got {size}")
    n_pad = size - len(pieces)
    pieces += [f"<unused{k}>" for k in range(n_pad)]
    types += [UNUSED] * n_pad
    # SentencePiece scores: specials/bytes 0, normal pieces -rank (earlier = merged first).
    scores = [0.0] * len(pieces)
    for k, t in enumerate(types):
        if t == NORMAL:
            scores[k] = -float(k)
        elif t == UNUSED:
            scores[k] = -1e9
    # BPE ranks follow the same order as the scores.
    index = {p: k for k, p in enumerate(pieces)}
    merges.sort(key=lambda m: index[m[0] + m[1]])
    return TinyVocab(pieces, scores, types, merges)


def build_tokenizer_json(vocab: TinyVocab) -> dict[str, Any]:
    """tokenizer.json for the ``tokenizers`` library, shaped like transformers' LlamaConverter
    output (legacy Llama/MiniCPM): prepend ▁, spaces → ▁, BPE with byte fallback."""
    added = []
    for k, (p, t) in enumerate(zip(vocab.pieces, vocab.types, strict=True)):
        if t in (UNKNOWN, CONTROL, USER_DEFINED):
            added.append({"id": k, "content": p, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False,
                          "special": t != USER_DEFINED or p in USER_DEFINED_TOKENS})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab.bos_id], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {p: k for k, p in enumerate(vocab.pieces)},
            "merges": [list(m) for m in vocab.merges]},
    }


def tokenizer_config(vocab: TinyVocab) -> dict[str, Any]:
    return {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 20,
        "chat_template": MINICPM_CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(k): {"content": p, "lstrip": False, "rstrip": False, "normalized": False,
                     "single_word": False, "special": True}
            for k, (p, t) in enumerate(zip(vocab.pieces, vocab.types, strict=True))
            if t in (UNKNOWN, CONTROL, USER_DEFINED)},
    }


def hf_tokenizer(vocab: TinyVocab | None = None) -> Any:
    """A ``tokenizers.Tokenizer`` for the tiny vocabulary (no file needed)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(build_tokenizer_json(vocab or tiny_vocab())))
