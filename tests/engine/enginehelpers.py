"""Helpers shared by the engine tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import threading
from typing import Any


class CancelAfter(threading.Event):
    """A cancel event that becomes set after ``n`` checks: cancels at an exact point inside the
    engine (between prefill chunks, between speculative tokens) without timing races."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.set()
        return super().is_set()


def load_llama(path: Any, **kw: Any) -> Any:
    """``minicpm.load`` on llama.cpp with 2 threads and no speculative decoding unless ``kw``
    says otherwise (``kw`` wins: n_ctx, kv_type, cache_mb…); ``path`` None: the stand-in."""
    import minicpm

    opts = {"n_threads": 2, "speculative": "off", **kw}
    return minicpm.load(str(path) if path else None, backend="llama.cpp", **opts)
