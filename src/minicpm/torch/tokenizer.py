"""Tokenizers for Hugging Face folders without transformers: tokenizer.json (the `tokenizers`
library) or SentencePiece tokenizer.model (MiniCPM-2B ships the latter). Each token maps to its
raw bytes so that the engine can decode UTF-8 incrementally (a character split over byte-fallback
tokens is only emitted once whole)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed (printable stand-ins → raw bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _spm_piece_bytes(piece: str) -> bytes:
    m = _BYTE_PIECE.match(piece)
    if m:
        return bytes([int(m.group(1), 16)])
    return piece.replace("▁", " ").encode("utf-8")


class Tokenizer:
    """encode(text, add_bos) → ids; token_bytes(id) → bytes; bos/eos ids and texts."""

    kind: str
    bos_id: int | None
    eos_ids: list[int]

    def __init__(self, folder: str | Path, bos_id: int | None = None,
                 eos_ids: list[int] | None = None):
        folder = Path(folder)
        self.folder = folder
        cfg_path = folder / "tokenizer_config.json"
        self.config: dict[str, Any] = json.loads(cfg_path.read_text("utf-8")) \
            if cfg_path.is_file() else {}
        if (folder / "tokenizer.json").is_file():
            self._load_hf(folder / "tokenizer.json")
        elif (folder / "tokenizer.model").is_file():
            self._load_spm(folder / "tokenizer.model")
        else:
            raise ModelFileError(folder, "no tokenizer.json or tokenizer.model beside config.json")
        self.bos_id = bos_id if bos_id is not None else self.token_id(self._special("bos_token"))
        eos = self.token_id(self._special("eos_token"))
        self.eos_ids = list(eos_ids or ([] if eos is None else [eos]))
        if eos is not None and eos not in self.eos_ids:
            self.eos_ids.append(eos)
        add_bos = self.config.get("add_bos_token")
        self.adds_bos = bool(self.bos_id is not None and (add_bos is None or add_bos))
        self._bytes: dict[int, bytes] = {}

    # --- loading --------------------------------------------------------------------------
    def _load_hf(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.kind = "tokenizer.json"
        self._hf = HFTokenizer.from_file(str(path))
        spec = json.loads(path.read_text("utf-8"))
        dec = json.dumps(spec.get("decoder") or {})
        self._byte_level = '"ByteLevel"' in dec
        self._specials = {t["id"]: t["content"] for t in spec.get("added_tokens", [])
                          if t.get("special")}
        self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)

    def _load_spm(self, path: Path) -> None:
        import sentencepiece as spm

        self.kind = "tokenizer.model"
        self._sp = spm.SentencePieceProcessor(model_file=str(path))
        self._byte_level = False
        self._specials = {i: self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())
                          if self._sp.is_control(i) or self._sp.is_unknown(i)}
        self.vocab_size = self._sp.get_piece_size()
        # User-defined pieces (MiniCPM's <用户>, <AI>) are matched atomically by SentencePiece.

    def _special(self, key: str) -> str | None:
        v = self.config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return v

    def token_id(self, text: str | None) -> int | None:
        if not text:
            return None
        if self.kind == "tokenizer.json":
            return self._hf.token_to_id(text)
        i = self._sp.piece_to_id(text)
        return None if i == self._sp.unk_id() and text != self._sp.id_to_piece(i) else i

    # --- API ------------------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        if self.kind == "tokenizer.json":
            ids = self._hf.encode(text, add_special_tokens=False).ids
        else:
            ids = self._sp.encode(text) if text else []
        if add_bos and self.bos_id is not None and self.adds_bos:
            ids = [self.bos_id, *ids]
        return list(ids)

    def piece(self, tok: int) -> str:
        if self.kind == "tokenizer.json":
            return self._hf.id_to_token(tok) or ""
        return self._sp.id_to_piece(tok)

    def token_text(self, tok: int | None) -> str:
        """A special token's text as the template writes it (BOS/EOS)."""
        return "" if tok is None else self.piece(tok)

    def token_bytes(self, tok: int) -> bytes:
        """The raw bytes a token stands for; control tokens (BOS, EOS, UNK) are empty."""
        b = self._bytes.get(tok)
        if b is None:
            if tok in self._specials:
                b = b""
            elif self.kind == "tokenizer.model" and self._sp.is_byte(tok):
                b = _spm_piece_bytes(self.piece(tok))
            elif self._byte_level:
                dec = _byte_decoder()
                p = self.piece(tok)
                b = bytes(dec[c] for c in p) if all(c in dec for c in p) else p.encode("utf-8")
            else:
                b = _spm_piece_bytes(self.piece(tok))
            self._bytes[tok] = b
        return b

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(t) for t in ids).decode("utf-8", errors="replace")
