"""A byte-budgeted LRU of KV snapshots, keyed by the token sequence each one holds.

The llama.cpp backend keeps one live sequence in its context; whenever a request diverges from
it (another conversation, another notebook, an edit far up a completion prefix), the live KV is
copied out into this cache first, and the request resumes from whichever is longer: the live
sequence's common prefix or the best snapshot's. Why snapshots and not several sequence ids in
one context: a context's KV cells are allocated (and zeroed, so resident) for all sequences at
load, whatever is used; snapshots cost exactly what they hold, only while they are held, and
copying one in or out runs at memory speed — far below the prefill it saves (numbers in
bench/prompt_cache.py and the README).

This module knows nothing about llama.cpp: a snapshot is an opaque buffer with a size."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


@dataclass
class Snapshot:
    tokens: tuple[int, ...]
    data: Any  # the backend's buffer (a numpy uint8 array for llama.cpp)
    nbytes: int
    saved_at: float = field(default_factory=time.monotonic)


# A request reusing at least this many prompt tokens counts as a hit (as many as a snapshot
# restore must gain to be worth it: llamacpp_kv.MIN_RESTORE_GAIN).
HIT_MIN_TOKENS = 16


@dataclass
class CacheStats:
    """Counters shown by /minicpm/status and `minicpm bench`. Read them anywhere; update them
    with the methods below (the backend reports what it did; the rules live here)."""

    requests: int = 0
    hits: int = 0  # requests that reused at least HIT_MIN_TOKENS (live sequence or snapshot)
    snapshot_hits: int = 0  # ... of which by restoring a snapshot
    prompt_tokens: int = 0
    tokens_reused: int = 0  # prompt tokens not prefilled thanks to the cache
    saves: int = 0
    spare_saves: int = 0  # ... of which into a buffer touched ahead (llama.cpp: a first save)
    restores: int = 0
    evictions: int = 0
    save_seconds: float = 0.0
    restore_seconds: float = 0.0

    def record_request(self, prompt_tokens: int, reused: int, from_snapshot: bool) -> None:
        """One prompt made ready: ``reused`` of its tokens were not prefilled."""
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.tokens_reused += reused
        if reused >= HIT_MIN_TOKENS:
            self.hits += 1
        if from_snapshot:
            self.snapshot_hits += 1

    def record_save(self, seconds: float, into_spare: bool = False) -> None:
        """The time of a save (``PromptCache.put`` counts it); ``into_spare``: into a buffer
        touched ahead."""
        self.save_seconds += seconds
        if into_spare:
            self.spare_saves += 1

    def record_restore(self, seconds: float) -> None:
        self.restores += 1
        self.restore_seconds += seconds


class PromptCache:
    """LRU of snapshots within ``budget_bytes``. ``min_tokens``: shorter sequences are not worth
    a snapshot (a short unrelated request must not push out a conversation)."""

    def __init__(self, budget_bytes: int, min_tokens: int = 64):
        self.budget_bytes = max(0, int(budget_bytes))
        self.min_tokens = min_tokens
        self._snaps: OrderedDict[int, Snapshot] = OrderedDict()  # oldest first
        # Memory the backend holds for a save to come (a spare buffer), counted in the budget.
        self.reserved_bytes = 0
        self._next_id = 0
        self.stats = CacheStats()
        # The engine runs one generation at a time, but status readers (the server's
        # /minicpm/status) call to_dict from other threads.
        self._lock = threading.RLock()

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._snaps.values())

    def __len__(self) -> int:
        return len(self._snaps)

    def snapshots(self) -> list[Snapshot]:
        with self._lock:
            return list(self._snaps.values())

    def best(self, tokens: Sequence[int]) -> tuple[Snapshot | None, int]:
        """The snapshot sharing the longest prefix with ``tokens`` (marked recently used)."""
        best_id, best_n = None, 0
        for sid, snap in list(self._snaps.items()):
            n = common_prefix(snap.tokens, tokens)
            if n > best_n:
                best_id, best_n = sid, n
        if best_id is None:
            return None, 0
        with self._lock:
            self._snaps.move_to_end(best_id)
            return self._snaps[best_id], best_n

    def covers(self, tokens: Sequence[int]) -> bool:
        """Does some snapshot already hold ``tokens`` (as itself or a prefix of it)?"""
        n = len(tokens)
        return any(len(s.tokens) >= n and common_prefix(s.tokens, tokens) == n
                   for s in self.snapshots())

    def worth_saving(self, tokens: Sequence[int]) -> bool:
        """Long enough and not held yet (whether it fits, ``put`` says: its size is only known
        to the backend, after this question)."""
        if not self.enabled or len(tokens) < self.min_tokens:
            return False
        return not self.covers(tokens)

    def put(self, tokens: Sequence[int], data: Any, nbytes: int) -> Snapshot | None:
        """Store a snapshot; drops those it supersedes (all but < min_tokens of them are its
        prefix), then the least recently used until the budget holds. Returns None if it cannot fit at all."""
        if nbytes > self.budget_bytes:
            return None
        key = tuple(tokens)
        with self._lock:
            self.take_stale(key)
            self.make_room(nbytes)
            snap = Snapshot(key, data, nbytes)
            self._snaps[self._next_id] = snap
            self._next_id += 1
            self.stats.saves += 1
        return snap

    def take_stale(self, tokens: Sequence[int]) -> list[Snapshot]:
        """Remove and return the snapshots that one of ``tokens`` supersedes: those it holds
        all but fewer than min_tokens of, i.e. the previous turn of the same conversation (whose
        reply was re-tokenized in this turn's prompt; its own tail alone would not have been
        worth a snapshot either). The caller may reuse their buffers."""
        with self._lock:
            stale = [sid for sid, s in self._snaps.items()
                     if common_prefix(s.tokens, tokens) > len(s.tokens) - self.min_tokens]
            return [self._snaps.pop(sid) for sid in stale]

    def make_room(self, nbytes: int) -> None:
        """Evict least recently used snapshots until ``nbytes`` more fit the budget."""
        with self._lock:
            while self._snaps and self.used_bytes + self.reserved_bytes + nbytes > \
                    self.budget_bytes:
                self._snaps.popitem(last=False)
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._snaps.clear()

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        snaps = self.snapshots()
        return {
            "enabled": self.enabled,
            "budget_mb": round(self.budget_bytes / 2**20, 1),
            "used_mb": round(sum(x.nbytes for x in snaps) / 2**20, 1),
            "spare_mb": round(self.reserved_bytes / 2**20, 1),
            "snapshots": len(snaps),
            "snapshot_tokens": sum(len(x.tokens) for x in snaps),
            "requests": s.requests,
            "hits": s.hits,
            "snapshot_hits": s.snapshot_hits,
            "prompt_tokens": s.prompt_tokens,
            "tokens_reused": s.tokens_reused,
            "reuse_ratio": round(s.tokens_reused / s.prompt_tokens, 3) if s.prompt_tokens else 0.0,
            "saves": s.saves,
            "spare_saves": s.spare_saves,
            "restores": s.restores,
            "evictions": s.evictions,
            "save_seconds": round(s.save_seconds, 4),
            "restore_seconds": round(s.restore_seconds, 4),
        }
