"""Grammar-constrained sampling and log-probabilities for the llama.cpp backend.

Our sampler stays ours (``speculative.TokenSampler``); llama.cpp's grammar sampler only
masks: ``llama_sampler_apply`` sets the logit of every token the grammar refuses to -inf,
over a token-data array that is a numpy structured array shared with C (no Python loop over
the vocabulary). As llama-server does, the full mask is built only when needed: the token
our sampler picks unconstrained is checked alone first (a one-entry array), and only if the
grammar refuses it is the whole vocabulary masked and the token drawn again. Greedy picks
are then exactly the grammar-constrained argmax; draws come from the masked distribution.

A grammar must never be fed a token it refuses (llama.cpp aborts the process), so every
accepted token has passed ``allows``."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..grammar import SchemaError
from ..speculative import TokenSampler

# llama_token_data: {int32 id; float logit; float p}, packed as C lays it out (12 bytes).
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
# When the unconstrained pick is refused, the best SHORTLIST tokens are checked first (one C
# call, ~0.1 ms); the whole vocabulary (19-43 ms for the stand-in's 49k tokens on a busy
# 2-core machine) only if too few of them are allowed to decide exactly (see _constrained).
SHORTLIST = 256


class Grammar:
    """One llama.cpp grammar sampler (lazy when ``triggers`` are given: it constrains
    nothing until the text matches one of those regex patterns)."""

    def __init__(self, lib: Any, vocab: Any, n_vocab: int, gbnf: str,
                 triggers: Sequence[str] = ()):
        self._lib = lib
        if triggers:
            pats = (ctypes.c_char_p * len(triggers))(*(t.encode() for t in triggers))
            self._smpl = lib.llama_sampler_init_grammar_lazy_patterns(
                vocab, gbnf.encode(), b"root", pats, len(triggers), None, 0)
        else:
            self._smpl = lib.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not self._smpl:
            raise SchemaError("llama.cpp refused the grammar made from this schema "
                              "(too many repetitions, or a construct it cannot parse)")
        self._all = np.zeros(n_vocab, dtype=TOKEN_DATA)
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)
        self._one = np.zeros(1, dtype=TOKEN_DATA)
        self._few = np.zeros(SHORTLIST, dtype=TOKEN_DATA)
        self._arr_all = self._array(self._all)
        self._arr_one = self._array(self._one)
        self._arr_few = self._array(self._few)
        self.complete = False  # only end-of-generation is left

    def _array(self, data: np.ndarray) -> Any:
        return self._lib.llama_token_data_array(
            data=data.ctypes.data_as(self._lib.llama_token_data_p), size=data.size,
            selected=-1, sorted=False)

    def _apply(self, arr: Any, size: int) -> None:
        arr.size, arr.selected, arr.sorted = size, -1, False
        self._lib.llama_sampler_apply(self._smpl, ctypes.byref(arr))

    def allows(self, tok: int) -> bool:
        self._one["id"][0], self._one["logit"][0] = tok, 0.0
        self._apply(self._arr_one, 1)
        return bool(np.isfinite(self._one["logit"][0]))

    def allowed(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (at most SHORTLIST) the grammar allows next, in one call."""
        n = len(ids)
        self._few["id"][:n], self._few["logit"][:n] = ids, 0.0
        self._apply(self._arr_few, n)
        return np.isfinite(self._few["logit"][:n])

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` with every refused token at -inf (a new array)."""
        self._all["logit"] = logits
        self._apply(self._arr_all, self._all.size)
        return self._all["logit"].copy()

    def accept(self, tok: int) -> None:
        self._lib.llama_sampler_accept(self._smpl, tok)

    def close(self) -> None:
        if self._smpl:
            self._lib.llama_sampler_free(self._smpl)
            self._smpl = None

    def __del__(self) -> None:  # a generator dropped mid-way still frees its sampler
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


@dataclass
class GrammarStats:
    """What constrained sampling cost (``Engine.stats()["grammar"]``; bench/structured.py)."""

    tokens: int = 0  # constrained tokens sampled
    seconds: float = 0.0  # spent in the grammar: checks, masks, accepts
    refused: int = 0  # unconstrained picks the grammar refused (then drawn again)
    full_masks: int = 0  # of those, decided over the whole vocabulary

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ms_per_token"] = round(1e3 * self.seconds / self.tokens, 3) if self.tokens else 0.0
        return d


class ConstrainedSampler:
    """``TokenSampler`` + an optional grammar + per-token log-probabilities.

    Called as ``sample(logits, history) -> token``; returns -1 when the grammar allows
    nothing more (the answer is complete). ``last_logprobs`` holds the OpenAI-shaped entry
    for the token just returned (when logprobs were asked for)."""

    def __init__(self, base: TokenSampler, grammar: Grammar | None, piece: Any,
                 is_eog: Any, stats: GrammarStats | None = None):
        self.base = base
        self.stats = stats or GrammarStats()
        self.grammar = grammar
        self.piece = piece  # token id → bytes
        self.is_eog = is_eog
        self.want = base.params.logprobs or base.params.top_logprobs > 0
        self.top = base.params.top_logprobs
        self.last_logprobs: dict[str, Any] | None = None
        # Every step must go through __call__ (no speculative drafts): grammar or logprobs.
        self.exact_steps = grammar is not None or self.want

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> int:
        tok = self.base(logits, history)
        g = self.grammar
        if g is not None:
            t0 = time.perf_counter()
            if not g.allows(tok):
                self.stats.refused += 1
                masked = self._constrained(g, logits, history)
                if not np.isfinite(masked).any():
                    return -1
                tok = self.base(masked, history)
            if self.is_eog(tok):
                g.complete = True
            else:
                g.accept(tok)
            self.stats.tokens += 1
            self.stats.seconds += time.perf_counter() - t0
        if self.want:
            self.last_logprobs = self.logprob_entry(logits, tok)
        return tok

    def _constrained(self, g: Grammar, logits: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """``logits`` with refused tokens at -inf, for drawing again. Exact from the shortlist
        alone when enough of it is allowed: greedy needs one allowed token (the best allowed
        token of all is then in it), top-k sampling needs k; otherwise the whole vocabulary."""
        p = self.base.params
        need = 1 if p.greedy else (p.top_k if 0 < p.top_k <= SHORTLIST else 0)
        if need and logits.size > SHORTLIST:
            order = self.base.adjust(logits, history)  # penalties and bias move the ranking
            short = np.argpartition(-order, SHORTLIST - 1)[:SHORTLIST]
            ok = short[g.allowed(short)]
            if ok.size >= need:
                out = np.full_like(logits, -np.inf)
                out[ok] = logits[ok]
                return out
        self.stats.full_masks += 1
        return g.mask(logits)

    def _token(self, tok: int) -> dict[str, Any]:
        b = self.piece(tok)
        return {"token": b.decode("utf-8", errors="replace"), "bytes": list(b)}

    def logprob_entry(self, logits: np.ndarray, tok: int) -> dict[str, Any]:
        """The model's own log-probabilities (before penalties and masks), as OpenAI reports."""
        x = logits.astype(np.float64)
        m = float(x.max())
        lse = m + float(np.log(np.exp(x - m).sum()))
        entry = {**self._token(tok), "logprob": float(x[tok] - lse), "top_logprobs": []}
        if self.top:
            k = min(self.top, x.size)
            idx = np.argpartition(-x, k - 1)[:k]
            idx = idx[np.argsort(-x[idx], kind="stable")]
            entry["top_logprobs"] = [{**self._token(int(i)), "logprob": float(x[i] - lse)}
                                     for i in idx]
        return entry

    def close(self) -> None:
        if self.grammar is not None:
            self.grammar.close()


def make_sampler(backend: Any, params: Any, seed: int, prompt_len: int) -> ConstrainedSampler:
    """The sampler for one generation of a ``LlamaCppBackend``."""
    grammar = None
    if params.grammar:
        grammar = Grammar(backend._lib, backend.vocab(), backend.llm.n_vocab(), params.grammar,
                          params.grammar_triggers)
    stats = backend.__dict__.setdefault("grammar_stats", GrammarStats())
    return ConstrainedSampler(TokenSampler(params, seed, prompt_len), grammar,
                              backend._piece, backend._is_eog, stats)
