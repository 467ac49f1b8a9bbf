"""The llama.cpp context at the KV level: one live sequence plus the prompt cache.

``KVSession.load_prompt(tokens)`` makes the context hold ``tokens`` and returns the next-token
logits, reusing the longest cached prefix (the live sequence, or a snapshot copied back in);
``prefill`` makes it hold a prompt prefix without sampling (the server's pre-read), in small
chunks so that a real request takes over within one;
``decode`` appends tokens (several at once for speculative verification); ``truncate`` drops
rejected ones. The token list of what the KV holds is kept in llama-cpp-python's own
``input_ids`` / ``n_tokens``, so code that uses the ``Llama`` object directly (the vision
handler, tests) and this module never disagree about what is in the cache."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import check_context
from .prompt_cache import PromptCache, common_prefix

# Restoring a snapshot costs a memory copy of all of it: take it only when it saves this many
# prompt tokens over the live sequence (restoring a 2.3k-token MiniCPM-2B state, 634 MB, takes
# ~0.11 s ≈ the prefill of ~3 tokens; see bench/prompt_cache.py).
MIN_RESTORE_GAIN = 16
# A snapshot's buffer gets this much room beyond its state, so that the next turn of the same
# conversation (a little longer) is saved into it. Copying into pages already touched runs
# several times faster than into a fresh allocation, whose page faults dominate (640 MB:
# ~75 ms against 275-800 ms here); the room is counted in the cache's budget.
SNAPSHOT_ROOM = 1 / 8
# A conversation's *first* save has no earlier buffer to reuse: after a request, while the
# user reads the answer, a spare buffer the size of the live state (+ room) is allocated and
# its pages touched in the background, within the cache's budget (it never evicts for it),
# so that the save paid by the next diverging request copies into touched pages. Smaller
# states are cheap to save into fresh memory anyway.
SPARE_MIN_BYTES = 16 * 2**20
PAGE = 4096
# The prompt cache's default budget (MB of KV snapshots, on top of the model and its context)
# is sized for the machine: an eighth of its RAM within these bounds. 8 GB → 1,024 MB (one
# ~2k-token MiniCPM-2B conversation at 282 KB per token besides the live one, or ~45k tokens
# of the stand-in); 16 GB and up → 2,048 MB (three).
DEFAULT_CACHE_MB_BOUNDS = (512, 2048)


def total_ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency
        return 0


def default_cache_mb(ram_bytes: int | None = None) -> float:
    ram = ram_bytes if ram_bytes is not None else total_ram_bytes()
    low, high = DEFAULT_CACHE_MB_BOUNDS
    return float(min(high, max(low, ram / 8 / 2**20)))


def base_buffer(view: np.ndarray) -> np.ndarray:
    """The whole allocation behind a snapshot's state (a view of its first bytes)."""
    return view.base if isinstance(view.base, np.ndarray) else view


class KVSession:
    def __init__(self, llm: Any, cache: PromptCache):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self.cache = cache
        self.n_ctx = llm.n_ctx()
        self.n_batch = llm.n_batch
        self.n_vocab = llm.n_vocab()
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.last_prepare: dict[str, Any] = {}
        # Called before every llama_decode (each prefill chunk, each decode step): the
        # backend re-chooses its thread count there (cpu_share.ThreadTuner.tick, rate-limited).
        self.tune: Callable[[], object] | None = None
        self.spare_min_bytes = SPARE_MIN_BYTES
        self._spare: np.ndarray | None = None
        self._warming: threading.Thread | None = None

    def close(self) -> None:
        self._drop_spare()
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None  # type: ignore[assignment]

    # --- what the KV holds ---------------------------------------------------------------
    @property
    def tokens(self) -> list[int]:
        return self.llm.input_ids[: self.llm.n_tokens].tolist()

    @property
    def n_tokens(self) -> int:
        return int(self.llm.n_tokens)

    def _mem(self) -> Any:
        return self._lib.llama_get_memory(self.llm.ctx)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens of the live sequence."""
        if n < self.llm.n_tokens:
            self._lib.llama_memory_seq_rm(self._mem(), 0, n, -1)
            self.llm.n_tokens = n

    def forget(self) -> None:
        """The live KV is unknown (someone else used the context): treat it as empty."""
        self._lib.llama_memory_clear(self._mem(), True)
        self.llm.n_tokens = 0

    # --- decoding --------------------------------------------------------------------------
    def decode(self, tokens: Sequence[int], all_logits: bool = False,
               cancel: threading.Event | None = None) -> np.ndarray | None:
        """Append ``tokens`` to the live sequence (in n_batch chunks; ``cancel`` is checked
        between chunks). Returns the last token's logits, or one row per token with
        ``all_logits`` (speculative verification); None if cancelled first."""
        llm, b = self.llm, self._batch
        check_context(llm.n_tokens + len(tokens), self.n_ctx, reserve=0)  # never overflow the KV
        rows: np.ndarray | None = None
        for start in range(0, len(tokens), self.n_batch):
            if cancel is not None and cancel.is_set():
                return None
            if self.tune is not None:
                self.tune()
            chunk = tokens[start:start + self.n_batch]
            last_chunk = start + self.n_batch >= len(tokens)
            b.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = llm.n_tokens + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = bool(last_chunk and (all_logits or i == len(chunk) - 1))
            rc = self._lib.llama_decode(llm.ctx, b)
            if rc != 0:
                # Whatever this chunk wrote is not trusted: drop it, keep what came before.
                self._lib.llama_memory_seq_rm(self._mem(), 0, llm.n_tokens, -1)
                if rc == 2:  # stopped by the abort callback (a pre-read giving way)
                    return None
                raise RuntimeError(f"llama_decode returned {rc}")
            llm.input_ids[llm.n_tokens:llm.n_tokens + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            if last_chunk:
                n_out = len(chunk) if all_logits else 1
                ptr = self._lib.llama_get_logits(llm.ctx)
                rows = np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab)).copy()
        return rows if all_logits else (rows[-1] if rows is not None else None)

    # --- the prompt cache ----------------------------------------------------------------
    def save_live(self) -> bool:
        """Copy the live sequence into the cache (if it is worth it and fits)."""
        toks = self.tokens
        if not self.cache.worth_saving(toks):
            return False
        t = time.perf_counter()
        ctx = self.llm.ctx
        size = self._lib.llama_state_seq_get_size(ctx, 0)
        if size > self.cache.budget_bytes:
            return False
        # The snapshot this one supersedes (this conversation's previous turn) lends its buffer.
        stale = self.cache.take_stale(toks)
        buf = min((b for b in (base_buffer(s.data) for s in stale) if b.nbytes >= size),
                  key=lambda b: b.nbytes, default=None)
        del stale
        into_spare = False
        if buf is None:
            buf = self._take_spare(size)
            into_spare = buf is not None
        capacity = buf.nbytes if buf is not None else \
            min(int(size * (1 + SNAPSHOT_ROOM)), self.cache.budget_bytes)
        self.cache.make_room(capacity)  # free first, so peak memory stays within the budget
        if buf is None:
            buf = np.empty(capacity, dtype=np.uint8)
        n = self._lib.llama_state_seq_get_data(
            ctx, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), size, 0)
        if n == 0:
            return False
        self.cache.put(toks, buf[:n], capacity)
        self.cache.stats.record_save(time.perf_counter() - t, into_spare)
        return True

    def warm_spare(self) -> bool:
        """After a request: get a touched buffer ready for saving the live sequence, in a
        background thread (only numpy work there: the llama context stays in this thread)."""
        if self._warming is not None and self._warming.is_alive():
            return False
        if not self.cache.enabled or self.n_tokens < self.cache.min_tokens:
            return False
        size = self._lib.llama_state_seq_get_size(self.llm.ctx, 0)
        if size < self.spare_min_bytes or self.cache.covers(self.tokens):
            return False
        if self._spare is not None and self._spare.nbytes >= size:
            return False
        self._drop_spare()
        want = min(int(size * (1 + SNAPSHOT_ROOM)), self.cache.budget_bytes)
        if self.cache.used_bytes + want > self.cache.budget_bytes:
            return False  # only free budget: a spare must not push out a conversation
        self.cache.reserved_bytes = want

        def touch() -> None:
            buf = np.empty(want, dtype=np.uint8)
            buf[::PAGE] = 0  # one write per page: the page faults happen here, not in the save
            self._spare = buf

        self._warming = threading.Thread(target=touch, name="minicpm-kv-spare", daemon=True)
        self._warming.start()
        return True

    def _take_spare(self, size: int) -> np.ndarray | None:
        if self._warming is not None:
            self._warming.join()  # still touching: finishing costs less than a fresh buffer
            self._warming = None
        buf, self._spare = self._spare, None
        self.cache.reserved_bytes = 0
        if buf is not None and buf.nbytes >= size:
            return buf
        return None

    def _drop_spare(self) -> None:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        self._spare = None
        self.cache.reserved_bytes = 0

    def _restore(self, snap: Any) -> bool:
        t = time.perf_counter()
        self._lib.llama_memory_seq_rm(self._mem(), 0, -1, -1)
        self.llm.n_tokens = 0
        buf: np.ndarray = snap.data  # the state; snap.nbytes is the memory held (with room)
        n = self._lib.llama_state_seq_set_data(
            self.llm.ctx, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), buf.nbytes, 0)
        if n == 0:
            self.forget()
            return False
        self.llm.input_ids[: len(snap.tokens)] = snap.tokens
        self.llm.n_tokens = len(snap.tokens)
        self.cache.stats.record_restore(time.perf_counter() - t)
        return True

    def _resume(self, tokens: Sequence[int], keep_last: bool) -> tuple[int, str]:
        """Make the live sequence the longest cached prefix of ``tokens`` (the live one, or a
        snapshot copied back in); returns its length and where it came from. ``keep_last``:
        the last token is left to decode (its logits are wanted)."""
        live = self.tokens
        m_live = common_prefix(live, tokens)
        snap, m_snap = self.cache.best(tokens) if self.cache.enabled else (None, 0)
        source = "live"
        if snap is not None and m_snap >= m_live + MIN_RESTORE_GAIN:
            if m_live < len(live):
                self.save_live()  # the live sequence is about to be lost: keep it
            if self._restore(snap):
                m, source = m_snap, "snapshot"
            else:
                m, source = 0, "none"
        else:
            m = m_live
            if m_live < len(live) and len(live) - m_live >= self.cache.min_tokens:
                self.save_live()
        if keep_last:
            m = min(m, len(tokens) - 1)  # the last prompt token must be decoded for its logits
        self.truncate(m)
        return m, source if m else "none"

    def load_prompt(self, tokens: Sequence[int], cancel: threading.Event) -> np.ndarray | None:
        """Make the KV hold ``tokens``; return the logits after the last one (None if
        cancelled). Reuses the longest cached prefix; at least one token is always decoded."""
        stats = self.cache.stats
        t0 = time.perf_counter()
        save0, restore0 = stats.save_seconds, stats.restore_seconds
        m, source = self._resume(tokens, keep_last=True)
        stats.record_request(len(tokens), m, from_snapshot=source == "snapshot")
        self.last_prepare = {"reused": m, "source": source,
                             "prefilled": len(tokens) - m,
                             "save_s": round(stats.save_seconds - save0, 4),
                             "restore_s": round(stats.restore_seconds - restore0, 4)}
        t1 = time.perf_counter()
        try:
            # The last prompt token is always decoded on its own, so the first answer token's
            # logits come from the same single-token pass whether the prefix was prefilled now
            # or reused: the same request then gives the same text whatever ran before. (Batched
            # and single-token matmuls round differently; on some CPUs enough to flip a greedy
            # choice. The price is one more weight pass per request.)
            head = list(tokens[m:-1])
            if head and self.decode(head, cancel=cancel) is None:
                return None
            logits = self.decode(list(tokens[-1:]), cancel=cancel)
        finally:
            # Where this request's time before its first token went (the bench prints it).
            done = time.perf_counter()
            self.last_prepare.update(prefill_s=round(done - t1, 4), prepare_s=round(done - t0, 4))
        return logits

    def prefill(self, tokens: Sequence[int], cancel: threading.Event, chunk_tokens: int = 64,
                yield_to: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Make the KV hold ``tokens`` (a prompt prefix: nothing is sampled), ``chunk_tokens``
        at a time; ``cancel`` and ``yield_to()`` (a real request wants the engine) are checked
        before every chunk and, through llama.cpp's abort callback, before every graph node
        inside one, so a request waits for one operation, not a chunk. What was read stays live
        (and is saved into the cache by the next request that diverges from it)."""
        t0 = time.perf_counter()
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"the prefix ({len(tokens)} tokens) does not fit the context "
                             f"({self.n_ctx})")
        m, source = self._resume(tokens, keep_last=False)
        done, stopped = m, False
        step = max(1, int(chunk_tokens))

        def stop(_data: Any = None) -> bool:
            return cancel.is_set() or (yield_to is not None and bool(yield_to()))

        # llama.cpp asks this before every graph node: a chunk is given up mid-way (~ms), not
        # finished (a 64-token chunk of MiniCPM-2B takes seconds on a busy 2-core laptop).
        # Only while pre-reading: a Python call per node would slow every decode step.
        abort = self._lib.ggml_abort_callback(stop)
        self._lib.llama_set_abort_callback(self.llm.ctx, abort, None)
        try:
            while done < len(tokens):
                chunk = list(tokens[done:done + step])
                if stop() or self.decode(chunk) is None:
                    stopped = True
                    break
                done += len(chunk)
        finally:
            self._lib.llama_set_abort_callback(self.llm.ctx, self._lib.ggml_abort_callback(),
                                               None)
        return {"prompt_tokens": len(tokens), "reused": m, "source": source,
                "prefilled": done - m, "cancelled": stopped,
                "seconds": round(time.perf_counter() - t0, 4)}
