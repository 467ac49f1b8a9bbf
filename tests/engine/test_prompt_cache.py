"""The llama.cpp backend's multi-sequence prompt cache: same greedy output as a full prefill,
LRU eviction within the byte budget, shared prefixes, cancel during a cached resume, and
``complete()`` streams (inline completion) reusing their prefix. Real llama.cpp, tiny f32
MiniCPM models with an f32 KV cache (batched and single-token numerics agree there)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from enginehelpers import CancelAfter, load_llama

from minicpm.backends.prompt_cache import HIT_MIN_TOKENS, CacheStats, PromptCache, common_prefix

pytest.importorskip("llama_cpp")

WORDS = ("import numpy as np\nimport pandas as pd\ndef load(path):\n    df = pd.read_csv(path)\n"
         "    return df.dropna()\n\nx = np.linspace(0, 1, 100)\nplt.plot(x, np.sin(x))\n")
NOTEBOOK_A = WORDS * 6
NOTEBOOK_B = WORDS.upper() * 6


load = partial(load_llama, n_ctx=1024, kv_type="f32")


@pytest.fixture(scope="module")
def model(tiny_gguf: Any) -> Any:
    return tiny_gguf("dense_tied", max_position_embeddings=1024)


@pytest.fixture(scope="module")
def reference(model: Any) -> Any:
    """Greedy text from a context that is emptied before every request: no reuse at all."""
    engine = load(model.path, cache_mb=0)

    def run(prompt: str, n: int = 12) -> str:
        engine.backend.kv.forget()
        return engine.complete(prompt, temperature=0, max_tokens=n, ignore_eos=True).read()

    yield run
    engine.close()


def greedy(engine: Any, prompt: str, n: int = 12, **kw: Any) -> Any:
    g = engine.complete(prompt, temperature=0, max_tokens=n, ignore_eos=True, **kw)
    g.read()
    return g


# --- the cache itself ----------------------------------------------------------------------

def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [6]) == 0


def test_cache_stats_keep_their_own_rules() -> None:
    s = CacheStats()
    s.record_request(100, HIT_MIN_TOKENS - 1, from_snapshot=False)  # reused too little: no hit
    s.record_request(100, HIT_MIN_TOKENS, from_snapshot=True)
    s.record_save(0.5, into_spare=True)
    s.record_restore(0.25)
    assert (s.requests, s.hits, s.snapshot_hits, s.prompt_tokens, s.tokens_reused) == \
        (2, 1, 1, 200, 2 * HIT_MIN_TOKENS - 1)
    assert (s.spare_saves, s.save_seconds, s.restores, s.restore_seconds) == (1, 0.5, 1, 0.25)


def test_lru_within_budget_and_superseded_prefixes() -> None:
    c = PromptCache(budget_bytes=250, min_tokens=2)
    a = list(range(10))
    c.put(a, b"", 100)
    c.put([7, 7, 7], b"", 100)
    assert c.best(a + [99])[1] == 10  # a is now the most recently used
    c.put([8, 8, 8], b"", 100)  # over budget: the least recently used ([7, 7, 7]) goes
    assert c.used_bytes <= 250 and c.stats.evictions == 1
    assert c.best([7, 7, 7])[1] == 0 and c.best([8, 8, 8, 1])[1] == 3
    c.put(a + [10, 11], b"", 160)  # supersedes a (its prefix), then evicts [8, 8, 8]
    assert len(c) == 1 and c.covers(a) and not c.worth_saving(a)
    assert c.put([1] * 5, b"", 251) is None  # larger than the whole budget
    assert not PromptCache(0).worth_saving(a)
    # The previous turn of a conversation (all but < min_tokens of it shared) is stale.
    c = PromptCache(budget_bytes=1000, min_tokens=3)
    c.put([1, 2, 3, 4, 5], b"", 10)
    c.put([1, 2, 3, 4, 9, 9], b"", 10)
    assert [s.tokens for s in c.snapshots()] == [(1, 2, 3, 4, 9, 9)]
    c.put([1, 2, 7, 7, 7, 7], b"", 10)  # shares too little: a conversation of its own
    assert len(c) == 2


# --- through the engine ----------------------------------------------------------------------

def test_alternating_conversations_match_full_prefill(model: Any, reference: Any) -> None:
    """Two notebook conversations alternate with a short unrelated request between turns; each
    follow-up resumes from its own snapshot and answers exactly as a full prefill would."""
    with load(model.path) as engine:
        turns = [NOTEBOOK_A + "Q1", "hi", NOTEBOOK_B + "Q1", "hello",
                 NOTEBOOK_A + "Q1 answer Q2", "hey", NOTEBOOK_B + "Q1 answer Q2"]
        for prompt in turns:
            g = greedy(engine, prompt)
            assert g.text == reference(prompt), prompt[-20:]
        s = engine.stats()["prompt_cache"]
        assert s["snapshot_hits"] >= 2 and s["restores"] >= 2
        n_a = engine.count_tokens(NOTEBOOK_A + "Q1", add_bos=True)
        # The last follow-up prefilled only its new tokens (a few), not the notebook.
        assert g.usage.prompt_tokens - s["last"]["prefilled"] >= n_a - 8
        assert s["last"]["source"] == "snapshot"


def test_next_turn_is_saved_into_the_previous_turns_buffer(model: Any, reference: Any) -> None:
    """Saving a conversation's next turn reuses the buffer of the snapshot it supersedes
    (touched pages copy several times faster than a fresh allocation), and what is restored
    from the reused buffer answers exactly as a full prefill."""
    from minicpm.backends.llamacpp_kv import base_buffer

    with load(model.path) as engine:
        cache = engine.backend.kv.cache
        greedy(engine, NOTEBOOK_A + "Q1")
        greedy(engine, "hi")  # diverges: turn 1 is saved
        (first,) = cache.snapshots()
        greedy(engine, NOTEBOOK_A + "Q1 answer Q2")
        greedy(engine, "hey")  # turn 2 is saved, superseding turn 1
        (second,) = cache.snapshots()
        assert len(second.tokens) > len(first.tokens)
        assert base_buffer(second.data) is base_buffer(first.data)
        assert second.data.nbytes > first.data.nbytes  # the longer state, in the same buffer
        assert cache.used_bytes == base_buffer(second.data).nbytes <= cache.budget_bytes
        prompt = NOTEBOOK_A + "Q1 answer Q2 answer Q3"
        assert greedy(engine, prompt).text == reference(prompt)
        assert engine.stats()["prompt_cache"]["last"]["source"] == "snapshot"


def test_first_save_goes_into_a_spare_touched_ahead(model: Any, reference: Any) -> None:
    """After a request, a buffer for the live state is allocated and its pages touched in the
    background; the conversation's first save (paid by the next diverging request) copies
    into it instead of a fresh allocation, and what is restored from it answers exactly."""
    from minicpm.backends.llamacpp_kv import base_buffer

    with load(model.path) as engine:
        kv = engine.backend.kv
        kv.spare_min_bytes = 0  # the tiny model's states are far below the real threshold
        greedy(engine, NOTEBOOK_A + "Q1")
        kv._warming.join()
        spare = kv._spare
        assert spare is not None and kv.cache.reserved_bytes == spare.nbytes
        assert engine.stats()["prompt_cache"]["spare_mb"] == round(spare.nbytes / 2**20, 1)
        greedy(engine, "hi")  # diverges: the conversation's first save
        (snap,) = kv.cache.snapshots()
        assert base_buffer(snap.data) is spare
        assert kv.cache.stats.spare_saves == 1 and kv.cache.reserved_bytes == 0
        prompt = NOTEBOOK_A + "Q1 answer Q2"
        assert greedy(engine, prompt).text == reference(prompt)
        assert engine.stats()["prompt_cache"]["last"]["source"] == "snapshot"


def test_a_spare_never_pushes_out_a_snapshot(model: Any) -> None:
    with load(model.path) as probe:
        greedy(probe, NOTEBOOK_A)
        assert probe.backend.kv.save_live()
        one = probe.backend.kv.cache.used_bytes  # a notebook's state with its room
    with load(model.path, cache_mb=one * 1.5 / 2**20) as engine:
        kv = engine.backend.kv
        kv.spare_min_bytes = 0
        greedy(engine, NOTEBOOK_A + "1")
        kv._warming.join()
        assert kv.cache.reserved_bytes > 0  # the budget is empty: room for a spare
        greedy(engine, NOTEBOOK_B + "1")  # A is saved into it; no room for B's spare
        assert kv.cache.stats.spare_saves == 1 and len(kv.cache) == 1
        assert kv.cache.reserved_bytes == 0 and kv.cache.stats.evictions == 0
        assert kv.cache.used_bytes <= kv.cache.budget_bytes


def test_eviction_keeps_the_budget(model: Any, reference: Any) -> None:
    with load(model.path) as probe:
        greedy(probe, NOTEBOOK_A)
        assert probe.backend.kv.save_live()
        one = probe.backend.kv.cache.used_bytes
    budget_mb = one * 1.5 / 2**20  # room for one notebook snapshot, not two
    with load(model.path, cache_mb=budget_mb) as engine:
        cache = engine.backend.kv.cache
        for prompt in [NOTEBOOK_A + "1", NOTEBOOK_B + "1", NOTEBOOK_A.lower() + "1",
                       NOTEBOOK_A + "2", NOTEBOOK_B + "2"]:
            assert greedy(engine, prompt).text == reference(prompt)
            assert cache.used_bytes <= cache.budget_bytes
        assert cache.stats.evictions >= 1 and len(cache) == 1


def test_two_conversations_sharing_a_prefix(model: Any, reference: Any) -> None:
    """Two conversations over the same notebook: the notebook is read once. A diverging tail
    long enough to be worth keeping (>= min_tokens) is snapshotted; a short one is not (the
    shared prefix stays live, and a few tokens are cheaper to prefill than a copy)."""
    long_q = NOTEBOOK_A + "Please rewrite this: " + WORDS.replace("df", "frame")
    with load(model.path) as engine:
        shared = engine.count_tokens(NOTEBOOK_A, add_bos=True)
        greedy(engine, long_q)
        g = greedy(engine, NOTEBOOK_A + "second question")
        last = engine.stats()["prompt_cache"]["last"]
        assert last["source"] == "live" and last["reused"] >= shared - 2
        assert g.text == reference(NOTEBOOK_A + "second question")
        assert engine.stats()["prompt_cache"]["snapshots"] == 1  # the long one was kept
        # Back to the first: its own longer prefix comes back from its snapshot.
        g = greedy(engine, long_q + " and more")
        last = engine.stats()["prompt_cache"]["last"]
        assert last["source"] == "snapshot"
        assert last["reused"] >= engine.count_tokens(long_q, add_bos=True) - 2
        assert g.text == reference(long_q + " and more")
        # A third conversation on the same notebook starts from the shared part.
        g = greedy(engine, NOTEBOOK_A + "third")
        assert engine.stats()["prompt_cache"]["last"]["reused"] >= shared - 2
        assert g.text == reference(NOTEBOOK_A + "third")


def test_cancel_during_a_cached_resume(model: Any, reference: Any) -> None:
    """Cancelled between prefill chunks after a snapshot was restored: nothing is produced,
    and the next request still answers exactly (the KV and its token list agree)."""
    with load(model.path, n_batch=16) as engine:
        greedy(engine, NOTEBOOK_A + "Q1")
        greedy(engine, NOTEBOOK_B + "Q1")
        follow = NOTEBOOK_A + "Q1 and then a much longer follow-up question " * 3
        g = engine.complete(follow, temperature=0, max_tokens=8, ignore_eos=True,
                            cancel=CancelAfter(2))
        assert g.read() == "" and g.usage.finish_reason == "cancelled"
        assert engine.stats()["prompt_cache"]["last"]["source"] == "snapshot"
        kv = engine.backend.kv
        assert kv.n_tokens < engine.count_tokens(follow, add_bos=True)  # stopped mid-prefill
        assert greedy(engine, follow).text == reference(follow)
        assert greedy(engine, NOTEBOOK_B + "Q1 again").text == reference(NOTEBOOK_B + "Q1 again")


def test_complete_stream_reuses_its_prefix(model: Any, reference: Any) -> None:
    """Inline completion: many small raw completions over a long, slowly growing prefix."""
    with load(model.path) as engine:
        prefix = NOTEBOOK_A
        for i in range(4):
            prefix += f"y{i} = x * {i}\n"
            assert greedy(engine, prefix, n=6).text == reference(prefix, 6)
        s = engine.stats()["prompt_cache"]
        assert s["hits"] >= 3 and s["reuse_ratio"] > 0.7


def test_default_budget_is_sized_for_the_machine() -> None:
    from minicpm.backends.llamacpp import default_cache_mb

    gb = 2**30
    assert default_cache_mb(4 * gb) == 512
    assert default_cache_mb(8 * gb) == 1024
    assert default_cache_mb(12 * gb) == 1536
    assert default_cache_mb(64 * gb) == 2048


def test_stats_shape_and_default_on(model: Any) -> None:
    from minicpm.backends.llamacpp import default_cache_mb

    with load(model.path) as engine:
        s = engine.stats()
        assert s["prompt_cache"]["enabled"]
        assert s["prompt_cache"]["budget_mb"] == round(default_cache_mb(), 1)
        assert {"hits", "tokens_reused", "used_mb", "snapshots"} <= set(s["prompt_cache"])
        assert s["kv"]["type"] == "f32" and s["rss_mb"] > 0
        assert engine.info.extra["prompt_cache_mb"] == default_cache_mb()
