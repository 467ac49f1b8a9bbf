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
    # OpenAI's extras: penalties on tokens generated so far, a bias per token id, and the
    # log-probabilities of each chosen token (plus the top_logprobs most likely ones).
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    # Constrained sampling (set by Engine from response_format / tools; see grammar.py): a
    # GBNF grammar, and for a lazy one the regex patterns that switch it on.
    grammar: str | None = None
    grammar_triggers: tuple[str, ...] = ()
    # response_format / tools / tool_choice as given, for a backend that forwards them to a
    # server of its own (remote) instead of sampling with a grammar itself.
    passthrough: Any = None

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
        if "logit_bias" in values:
            values["logit_bias"] = _logit_bias(values["logit_bias"])
        if "grammar_triggers" in values:
            values["grammar_triggers"] = tuple(values["grammar_triggers"])
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
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -2.0 <= v <= 2.0:
                raise ValueError(f"{name} must be a number in [-2, 2], got {v!r}")
        if isinstance(self.top_logprobs, bool) or not isinstance(self.top_logprobs, int) \
                or not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be a whole number in [0, 20], got "
                             f"{self.top_logprobs!r}")
        if not isinstance(self.logprobs, bool):
            raise ValueError("logprobs must be true or false")
        if self.grammar is not None and not isinstance(self.grammar, str):
            raise ValueError("grammar must be GBNF text")


MAX_LOGIT_BIAS = 300  # entries (OpenAI accepts up to 300)


def _logit_bias(raw: Any) -> tuple[tuple[int, float], ...]:
    """OpenAI's {"token id": bias in [-100, 100]} → sorted (id, bias) pairs."""
    if isinstance(raw, tuple):
        return raw
    if not isinstance(raw, dict):
        raise ValueError("logit_bias must be an object of {token id: bias}")
    if len(raw) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias has {len(raw)} entries; the limit is {MAX_LOGIT_BIAS}")
    out = []
    for k, v in raw.items():
        try:
            tok = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias keys must be token ids, got {k!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100:
            raise ValueError(f"logit_bias values must be numbers in [-100, 100], got {v!r}")
        if tok < 0:
            raise ValueError(f"logit_bias: token id {tok} is negative")
        out.append((tok, float(v)))
    return tuple(sorted(out))


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
