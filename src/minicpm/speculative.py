"""Speculative decoding by prompt lookup, and the sampler it verifies with.

Answers that edit the user's code (fix this error, add docstrings, refactor) copy long runs of
the prompt. ``NGramDrafter`` proposes the tokens that followed the latest earlier occurrence of
the last n tokens; the target model scores the drafts in one batch; ``verify`` keeps them while
the target's own choice (its argmax when greedy, its own sample otherwise) equals the draft.
A draft is a single deterministic guess, so "accept when the target's sample equals it, else
emit that sample" draws every token from exactly the target's distribution.

Backend-free: numpy only."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .sampling import SamplingParams

PENALTY_LAST_N = 64  # as llama.cpp: the repetition penalty looks at the last 64 tokens


class TokenSampler:
    """Repetition penalty (and OpenAI's logit bias, frequency and presence penalties) →
    greedy argmax, or temperature → top-k → top-p → one draw.
    Same steps as ``sampling.sample_token``, with a partial sort so that a 120k vocabulary
    costs well under a millisecond per token."""

    def __init__(self, params: SamplingParams, seed: int | None, prompt_len: int = 0):
        self.params = params
        self.rng = np.random.default_rng(seed)
        # frequency / presence penalties count only generated tokens (as OpenAI's do).
        self.prompt_len = prompt_len
        bias = params.logit_bias
        self._bias_ids = np.array([t for t, _ in bias], dtype=np.int64)
        self._bias_vals = np.array([b for _, b in bias], dtype=np.float32)

    def adjust(self, logits: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """Repetition penalty, logit bias, frequency and presence penalties (a copy if any)."""
        p = self.params
        if p.repetition_penalty != 1.0 and history:
            logits = logits.astype(np.float32, copy=True)
            ids = np.unique(np.asarray(history[-PENALTY_LAST_N:], dtype=np.int64))
            vals = logits[ids]
            logits[ids] = np.where(vals > 0, vals / p.repetition_penalty,
                                   vals * p.repetition_penalty)
        if self._bias_ids.size:
            logits = logits.astype(np.float32, copy=True)
            keep = self._bias_ids < logits.size
            logits[self._bias_ids[keep]] += self._bias_vals[keep]
        if (p.frequency_penalty or p.presence_penalty) and len(history) > self.prompt_len:
            ids, counts = np.unique(np.asarray(history[self.prompt_len:], dtype=np.int64),
                                    return_counts=True)
            logits = logits.astype(np.float32, copy=True)
            logits[ids] -= counts * p.frequency_penalty + p.presence_penalty
        return logits

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> int:
        p = self.params
        logits = self.adjust(logits, history)
        if p.greedy:
            return int(np.argmax(logits))
        k = int(p.top_k) if p.top_k and p.top_k < logits.size else logits.size
        cand = np.argpartition(-logits, k - 1)[:k] if k < logits.size else np.arange(logits.size)
        scaled = logits[cand].astype(np.float64) / float(p.temperature)
        order = np.argsort(-scaled, kind="stable")
        cand, scaled = cand[order], scaled[order]
        probs = np.exp(scaled - scaled[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            cand, probs = cand[:keep], probs[:keep] / probs[:keep].sum()
        return int(cand[self.rng.choice(len(cand), p=probs)])


class NGramDrafter:
    """Prompt lookup: an index from each n-gram (n = max_ngram … min_ngram) to the position
    after its latest occurrence, kept up to date as the history grows."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2):
        self.ngrams = range(max_ngram, min_ngram - 1, -1)
        self._index: dict[tuple[int, ...], int] = {}
        self._done = 0  # n-grams ending before this position are indexed
        self._history: list[int] = []

    def reset(self, history: Sequence[int]) -> None:
        self._history = list(history)
        self._index.clear()
        self._done = 0

    def append(self, tok: int) -> None:
        self._history.append(tok)

    def _sync(self) -> None:
        h = self._history
        # Index every n-gram that ends strictly before the last token; the last n tokens are
        # the query, and must find an *earlier* occurrence.
        for end in range(max(self._done, 1), len(h)):
            for n in self.ngrams:
                if end >= n:
                    self._index[tuple(h[end - n:end])] = end
        self._done = max(self._done, len(h))

    def propose(self, k: int) -> list[int]:
        """Up to ``k`` draft tokens following the history, or [] if no n-gram matches."""
        if k <= 0:
            return []
        self._sync()
        h = self._history
        for n in self.ngrams:
            if len(h) <= n:
                continue
            end = self._index.get(tuple(h[-n:]))
            if end is not None and end < len(h):
                return h[end:end + k]
        return []


def verify(rows: np.ndarray, draft: Sequence[int], history: Sequence[int],
           sample: Callable[[np.ndarray, Sequence[int]], int]) -> tuple[list[int], int]:
    """``rows[i]``: the target's logits after history + draft[:i] (len(draft)+1 rows).
    Returns (accepted drafts, the target's next token after them)."""
    accepted: list[int] = []
    hist = list(history)
    for i, d in enumerate(draft):
        t = sample(rows[i], hist)
        if t != d:
            return accepted, t
        accepted.append(d)
        hist.append(d)
    return accepted, sample(rows[len(draft)], hist)


@dataclass
class SpecStats:
    steps: int = 0  # verify batches run
    drafted: int = 0
    accepted: int = 0
    plain_steps: int = 0  # single-token decodes (no draft found)
    # (draft length, accepted) of recent verify steps: bench/speculative.py prices them with
    # the verify-cost ratios measured on a bigger model.
    trace: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=4096))

    def record(self, n_draft: int, n_accepted: int) -> None:
        self.steps += 1
        self.drafted += n_draft
        self.accepted += n_accepted
        self.trace.append((n_draft, n_accepted))

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "plain_steps": self.plain_steps, "acceptance": round(self.acceptance, 3)}


class DraftLength:
    """Adaptive draft length: doubles after a fully accepted draft, halves after a rejected
    first token; a rejected one-token draft pauses drafting for a while (4, 8 … 64 tokens), so
    text that does not copy the prompt (free-form chat) pays almost nothing for speculation."""

    def __init__(self, k_max: int = 8):
        self.k_max = max(1, k_max)
        self.k = min(4, self.k_max)
        self.pause = 0  # tokens to decode plainly before drafting again
        self._next_pause = 4

    def ready(self) -> bool:
        """May this step draft? (Counts down a pause.)"""
        if self.pause > 0:
            self.pause -= 1
            return False
        return True

    def update(self, n_draft: int, n_accepted: int) -> None:
        if n_accepted == n_draft:
            self.k = min(self.k_max, self.k * 2)
            self._next_pause = 4
        elif n_accepted == 0:
            if self.k == 1:
                self.pause = self._next_pause
                self._next_pause = min(64, self._next_pause * 2)
            self.k = max(1, self.k // 2)
