"""Speculative decoding by prompt lookup: the drafter, exactness of verification (greedy and
sampled), same greedy text as plain decoding through real llama.cpp (tiny f32 MiniCPM), and
cancel inside a speculative step."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
from enginehelpers import CancelAfter, load_llama

from minicpm.sampling import SamplingParams
from minicpm.speculative import DraftLength, NGramDrafter, TokenSampler, verify

CODE = ("def area(r):\n    return 3.14159 * r * r\n\n"
        "def perimeter(r):\n    return 2 * 3.14159 * r\n\n") * 3


def test_drafter_copies_what_followed_the_last_ngram() -> None:
    d = NGramDrafter(max_ngram=3, min_ngram=2)
    d.reset([1, 2, 3, 4, 5, 9, 9, 2, 3])
    assert d.propose(3) == [4, 5, 9]  # "2 3" was followed by 4 5 9
    d.append(4)
    assert d.propose(2) == [5, 9]  # now "2 3 4" matches (longest n-gram first)
    d.append(7)
    assert d.propose(4) == []  # "4 7" never seen
    assert d.propose(0) == []


def test_draft_length_adapts() -> None:
    k = DraftLength(8)
    assert k.k == 4
    k.update(4, 4)
    assert k.k == 8
    k.update(8, 0)
    k.update(4, 0)
    assert k.k == 2
    k.update(2, 1)  # partly accepted: unchanged
    assert k.k == 2
    k.update(2, 0)
    k.update(1, 0)  # a rejected single-token draft: no drafting for the next 4 tokens
    assert [k.ready() for _ in range(5)] == [False] * 4 + [True]
    k.update(1, 0)  # again: a longer pause
    assert k.pause == 8
    k.update(1, 1)
    assert k.k == 2


def test_greedy_verify_takes_the_target_argmax() -> None:
    rows = np.full((4, 10), -1.0)
    rows[0, 3], rows[1, 5], rows[2, 6], rows[3, 0] = 1, 1, 1, 1
    s = TokenSampler(SamplingParams(temperature=0), seed=0)
    assert verify(rows, [3, 5, 7], [1], s) == ([3, 5], 6)
    assert verify(rows[:3], [3, 5], [1], s) == ([3, 5], 6)  # all accepted: bonus token
    assert verify(rows, [2, 5, 6], [1], s) == ([], 3)


def test_sampled_verification_is_exact_in_distribution() -> None:
    """Emitted first tokens follow the target's distribution whatever the draft guesses."""
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rows = np.stack([logits, logits])
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    sample = TokenSampler(params, seed=123)
    n = 20000
    for draft in ([1], [3]):
        counts = np.zeros(4)
        for _ in range(n):
            acc, nxt = verify(rows, draft, [], sample)
            counts[acc[0] if acc else nxt] += 1
        assert np.abs(counts / n - np.exp(logits)).max() < 0.015, (draft, counts / n)


def test_sampler_top_k_top_p_and_penalty() -> None:
    logits = np.array([5.0, 4.0, 3.0, -2.0, 1.0], dtype=np.float32)
    s = TokenSampler(SamplingParams(temperature=0.7, top_k=2), seed=0)
    assert {s(logits, []) for _ in range(200)} == {0, 1}
    s = TokenSampler(SamplingParams(temperature=1.0, top_k=0, top_p=0.5), seed=0)
    assert {s(logits, []) for _ in range(100)} == {0}
    g = TokenSampler(SamplingParams(temperature=0, repetition_penalty=2.0), seed=0)
    assert g(logits, [0]) == 1  # 5/2 < 4


# --- through llama.cpp -----------------------------------------------------------------------

load = partial(load_llama, n_ctx=1024, kv_type="f32")  # each test says `speculative`


@pytest.fixture(scope="module")
def model(tiny_gguf: Any) -> Any:
    pytest.importorskip("llama_cpp")
    return tiny_gguf("dense_tied", max_position_embeddings=1024)


def test_greedy_text_unchanged_and_drafts_accepted(model: Any) -> None:
    with load(model.path, speculative="off") as plain, load(model.path, speculative="on") as spec:
        for prompt in (CODE, CODE + "def volume(r):"):
            want = plain.complete(prompt, temperature=0, max_tokens=48, ignore_eos=True).read()
            plain.backend.kv.forget()
            got = spec.complete(prompt, temperature=0, max_tokens=48, ignore_eos=True)
            assert got.read() == want
            assert got.usage.completion_tokens == 48
        s = spec.stats()["speculative"]
        assert s["enabled"] and s["steps"] > 0 and s["accepted"] > 0
        assert plain.stats()["speculative"]["steps"] == 0


def test_sampling_with_drafts_is_seed_reproducible(model: Any) -> None:
    with load(model.path, speculative="on") as spec:
        kw = dict(temperature=0.8, top_k=20, max_tokens=40, ignore_eos=True, seed=7)
        a = spec.complete(CODE, **kw).read()
        b = spec.complete(CODE, **kw).read()
        assert a == b and spec.stats()["speculative"]["steps"] > 0


def test_cancel_inside_a_speculative_step(model: Any) -> None:
    """Cancelled while the accepted drafts of a verify batch are being handed out: at most one
    more token, and the KV holds a consistent sequence for the next request."""
    with load(model.path, speculative="on") as spec, load(model.path, speculative="off") as ref:
        want = ref.complete(CODE, temperature=0, max_tokens=60, ignore_eos=True).read()
        # Find a step that accepted several drafts, then cancel in the middle of it.
        kv = spec.backend.kv
        for n in range(6, 60):
            g = spec.complete(CODE, temperature=0, max_tokens=200, ignore_eos=True,
                              cancel=CancelAfter(n))
            text = g.read()
            assert g.usage.finish_reason == "cancelled" and want.startswith(text)
            # Plain decoding leaves prompt + emitted - 1 tokens in the KV, a finished verify
            # step prompt + emitted: more means accepted drafts were still unsent.
            if kv.n_tokens > g.usage.prompt_tokens + g.usage.completion_tokens:
                break
        else:
            pytest.fail("no speculative step was interrupted")
        assert spec.complete(CODE, temperature=0, max_tokens=60, ignore_eos=True).read() == want
