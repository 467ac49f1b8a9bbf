"""Prefix reuse in the static KV cache (one slot): a prompt that starts like the previous
sequence prefills only its new tokens, and gives the same greedy tokens as a generator that
never reuses; a cancelled or abandoned generation leaves only K/V it really wrote."""

from __future__ import annotations

import pytest

import minicpm
from minicpm.sampling import SamplingParams
from minicpm.torch.generate import Generator
from minicpm.torch.loader import load_model

GREEDY = SamplingParams(temperature=0, ignore_eos=True)


def _model(tiny_hf, name: str):
    # stronger residual branches: the default tiny weights make greedy decoding repeat one
    # token, which would make any comparison of token lists trivial
    return tiny_hf(name, seed=3, scale_emb=1.0, scale_depth=8.0).path


def _pair(path) -> tuple[Generator, Generator]:
    """Two generators over two copies of the same weights: with and without reuse."""
    return (Generator(load_model(path)[0], 96, cuda_graph=False, reuse_prefix=True),
            Generator(load_model(path)[0], 96, cuda_graph=False, reuse_prefix=False))


def _run(gen: Generator, prompt: list[int], n: int) -> list[int]:
    return list(gen.generate(prompt, GREEDY, max_new=n))


@pytest.mark.parametrize("name", ["dense_tied", "gqa", "moe", "rope128k"])
def test_same_greedy_tokens_with_and_without_reuse(tiny_hf, name: str) -> None:
    reuse, fresh = _pair(_model(tiny_hf, name))
    turn1 = [1, 17, 40, 9, 23, 61, 5]
    a1, b1 = _run(reuse, turn1, 8), _run(fresh, turn1, 8)
    assert a1 == b1 and len(set(a1)) > 1
    # the follow-up turn: the whole first exchange, then new tokens
    turn2 = turn1 + a1 + [33, 12, 70]
    assert _run(reuse, turn2, 8) == _run(fresh, turn2, 8)
    # a prompt that diverges after BOS, and the same prompt twice
    for prompt in ([1, 99, 4, 8], [1, 99, 4, 8]):
        assert _run(reuse, prompt, 6) == _run(fresh, prompt, 6)
    assert fresh.stats["tokens_reused"] == 0
    if name == "rope128k":  # past max_position_embeddings (16): dynamic NTK, no reuse
        assert reuse.reusable(turn2) == 0 and reuse.stats["tokens_reused"] > 0
    else:
        # turn 2 reused turn 1 + 7 of its 8 answer tokens (the 8th was never fed back);
        # the repeated prompt reused all but its last token
        assert reuse.stats["tokens_reused"] == len(turn1) + 7 + 1 + 3
        assert reuse.stats["prefix_hits"] == 3


def test_cancelled_and_abandoned_generations_do_not_poison_the_cache(tiny_hf) -> None:
    reuse, fresh = _pair(_model(tiny_hf, "gqa"))
    prompt = [1, 17, 40, 9, 23, 61, 5]
    # cancelled after 3 tokens: should_stop is checked before each token
    n = 0

    def stop() -> bool:
        return n >= 3

    got = []
    for t in reuse.generate(prompt, GREEDY, should_stop=stop, max_new=20):
        got.append(t)
        n += 1
    assert len(got) == 3
    assert reuse.cached == prompt + got[:2]  # the 3rd token was yielded, never decoded
    follow = prompt + got + [44, 2, 7]
    assert _run(reuse, follow, 6) == _run(fresh, follow, 6)
    # abandoned mid-way (the consumer stops iterating), then a prompt that shares a prefix
    it = reuse.generate([1, 50, 51, 52], GREEDY, max_new=20)
    partial = [next(it), next(it)]
    it.close()
    follow = [1, 50, 51, 52] + partial + [9]
    assert _run(reuse, follow, 6) == _run(fresh, follow, 6)
    assert reuse.stats["tokens_reused"] > 0


def test_a_failed_prefill_leaves_nothing_to_reuse(tiny_hf, monkeypatch) -> None:
    reuse, fresh = _pair(_model(tiny_hf, "dense_tied"))
    prompt = [1, 17, 40, 9]
    _run(reuse, prompt, 4)

    def boom(*a, **kw):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(reuse, "prefill", boom)
    with pytest.raises(RuntimeError):
        _run(reuse, prompt + [5, 6], 4)
    monkeypatch.undo()
    assert reuse.cached == []
    assert _run(reuse, prompt + [5, 6], 4) == _run(fresh, prompt + [5, 6], 4)


def test_backend_chat_follow_up_reuses_the_conversation(tiny_hf) -> None:
    eng = minicpm.load(str(tiny_hf("gqa").path), backend="torch", n_ctx=128)
    try:
        msgs = [{"role": "user", "content": "hello world the model"}]
        first = eng.chat(msgs, temperature=0, max_tokens=6)
        answer = first.read()
        stats = eng.backend.gen.stats
        before = stats["tokens_reused"]
        msgs += [{"role": "assistant", "content": answer}, {"role": "user", "content": "why"}]
        second = eng.chat(msgs, temperature=0, max_tokens=6)
        second.read()
        reused = stats["tokens_reused"] - before
        # at least the whole first user turn came from the cache
        assert reused >= len(eng.backend.tokenize(eng.render(msgs[:1])))
        assert second.usage.prompt_tokens > reused
    finally:
        eng.close()
