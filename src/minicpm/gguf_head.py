"""The head of a GGUF file, read cheaply: its metadata up to the first big array (the
vocabulary), which is where architecture, type, name and pre-tokenizer live. Used to tell chat
models from embeddings and projectors, and MiniCPM from the rest, without reading tensors."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any

# Architectures that only embed text (no generation); files with a pooling type are too.
EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
                   "t5encoder", "modern-bert", "neo-bert", "eurobert", "gemma-embedding"}
_HEAD_LIMIT = 4 << 20  # never read more than this of a file's metadata
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_cache: dict[tuple[str, int, int], dict[str, Any]] = {}
_cache_lock = threading.Lock()


class _Stop(Exception):
    pass


def read_head(path: Path) -> dict[str, Any]:
    """The GGUF metadata before the first big array (the vocabulary): architecture, type, name,
    pre-tokenizer, pooling… {} when the file is not GGUF. Reads at most a few MB, usually KBs."""
    meta: dict[str, Any] = {}
    with open(path, "rb") as f:
        used = 0

        def take(n: int) -> bytes:
            nonlocal used
            used += n
            if n < 0 or used > _HEAD_LIMIT:
                raise _Stop
            b = f.read(n)
            if len(b) != n:
                raise _Stop
            return b

        def value(t: int) -> Any:
            if t in _SCALARS:
                fmt = _SCALARS[t]
                return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]
            if t == 8:
                return take(struct.unpack("<Q", take(8))[0]).decode("utf-8", "replace")
            if t == 9:
                it, count = struct.unpack("<IQ", take(12))
                if count > 64:  # the vocabulary: everything we want comes before it
                    raise _Stop
                return [value(it) for _ in range(count)]
            raise _Stop

        try:
            if take(4) != b"GGUF":
                return {}
            version, _n_tensors, n_kv = struct.unpack("<IQQ", take(20))
            meta["gguf.version"] = version
            for _ in range(min(n_kv, 100_000)):
                key = value(8)
                meta[key] = value(struct.unpack("<I", take(4))[0])
        except (_Stop, struct.error):
            pass
    return meta


def head(path: Path, st: os.stat_result) -> dict[str, Any]:
    """read_head, cached by (path, mtime, size)."""
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        try:
            hit = read_head(path)
        except OSError:
            hit = {}
        with _cache_lock:
            if len(_cache) > 4096:
                _cache.clear()
            _cache[key] = hit
    return hit


def classify(meta: dict[str, Any]) -> tuple[str | None, str]:
    """(architecture, kind) from a file's head."""
    from .gguf_check import SUPPORTED_ARCHS

    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return None, "unreadable"
    gtype = str(meta.get("general.type") or "")
    if arch == "clip" or gtype == "mmproj":
        return arch, "projector"
    if gtype == "adapter":
        return arch, "adapter"
    if arch in EMBEDDING_ARCHS or meta.get(f"{arch}.pooling_type") not in (None, 0):
        return arch, "embedding"
    if arch not in SUPPORTED_ARCHS:
        return arch, "unsupported"
    return arch, "chat"


def is_minicpm(meta: dict[str, Any], *names: str) -> bool:
    arch = str(meta.get("general.architecture") or "")
    text = " ".join([str(meta.get("general.name") or ""), str(meta.get("general.basename") or ""),
                     *names]).lower()
    return arch.startswith("minicpm") or meta.get("tokenizer.ggml.pre") == "minicpm5" \
        or "minicpm" in text


