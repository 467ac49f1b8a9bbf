"""Sampling parameters shared by every backend, a reference sampler in numpy, and stop strings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

DEFAULT_MAX_TOKENS = 512


@dataclass(frozen=True)
class SamplingParams:
    """What the engine contract accepts as ``**sampling``. Greedy when temperature is 0."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    repetition_penalty: float = 1.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: always generate max_tokens

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @classmethod
    def from_kwargs(cls, base: SamplingParams | None = None, **kwargs: Any) -> SamplingParams:
        """Validate user-supplied sampling options; unknown names and bad values raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown sampling option(s): {', '.join(unknown)}")
        values = {k: v for k, v in kwargs.items() if v is not None or k == "seed"}
        if "stop" in values:
            stop = values["stop"]
            values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop or ())
        params = replace(base or cls(), **values)
        params.validate()
        return params

    def validate(self) -> None:
        if not 0.0 <= float(self.temperature) <= 5.0:
            raise ValueError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if int(self.top_k) < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < float(self.repetition_penalty) <= 10.0:
            raise ValueError(f"repetition_penalty must be in (0, 10], got {self.repetition_penalty}")
        if int(self.max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError("stop must be non-empty strings")


def apply_repetition_penalty(logits: np.ndarray, history: Iterable[int], penalty: float) -> np.ndarray:
    """CTRL-style penalty (as transformers and llama.cpp): divide positive logits, multiply negative."""
    if penalty == 1.0:
        return logits
    out = logits.copy()
    ids = np.unique(np.fromiter(history, dtype=np.int64))
    if ids.size:
        vals = out[ids]
        out[ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def sample_token(
    logits: np.ndarray,
    params: SamplingParams,
    rng: np.random.Generator,
    history: Sequence[int] = (),
) -> int:
    """Reference sampler: repetition penalty → greedy, or temperature → top-k → top-p → draw."""
    logits = apply_repetition_penalty(np.asarray(logits, dtype=np.float64), history,
                                      params.repetition_penalty)
    if params.greedy:
        return int(np.argmax(logits))
    logits = logits / params.temperature
    order = np.argsort(-logits, kind="stable")
    if params.top_k:
        order = order[: params.top_k]
    top = logits[order]
    probs = np.exp(top - top.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])


class StopMatcher:
    """Streams text while holding back any tail that could be the start of a stop string."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what is safe to emit now. Sets ``stopped`` on a full match."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._pending + text
        hits = [(buf.find(s), s) for s in self.stops if s in buf]
        if hits:
            cut = min(i for i, _ in hits)
            self._pending = ""
            self.stopped = True
            return buf[:cut]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        self._pending = buf[len(buf) - hold:] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        """At the end of generation, whatever was held back is real text."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
