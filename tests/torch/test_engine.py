"""The torch backend through minicpm.load / Engine: info, streaming, EOS, cancel, seeds,
sampler parity with the numpy reference sampler."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import minicpm
from minicpm import templates
from minicpm.sampling import SamplingParams, sample_token
from minicpm.testing import reference
from minicpm.torch.generate import Sampler


def take(tokens, n: int) -> list[int]:
    """The first n token ids; stops the generator there (it would run to the end of n_ctx)."""
    return [t for _, (t, _b) in zip(range(n), tokens, strict=False)]


def greedy_reference(cfg, wts, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(np.argmax(reference.forward(cfg, wts, seq)[-1])))
    return seq[len(prompt):]


@pytest.fixture
def engine(tiny_hf):
    # stronger residual branches: the default tiny weights make greedy decoding repeat a token
    m = tiny_hf("gqa", seed=3, scale_emb=1.0, scale_depth=8.0)
    eng = minicpm.load(str(m.path), backend="torch", n_ctx=64)
    yield eng, m.cfg, m.weights
    eng.close()


def test_info(engine) -> None:
    eng, cfg, _ = engine
    i = eng.info
    assert (i.backend, i.device, i.architecture, i.context_length) == ("torch", "cpu", "minicpm", 64)
    assert i.quantization == "float32" and i.parameters and i.parameters > 0
    assert eng.backend.chat_template == "minicpm"


def test_greedy_tokens_follow_reference_argmax(engine) -> None:
    eng, cfg, wts = engine
    b = eng.backend
    prompt = b.tokenize("hello world the cat", add_bos=True)
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    got = take(b.generate_tokens(prompt, params, threading.Event()), 6)
    assert got == greedy_reference(cfg, wts, prompt, 6) and len(set(got)) > 1


def test_streaming_complete_and_usage(engine) -> None:
    eng, _, _ = engine
    gen = eng.complete("the cat sat", temperature=0, max_tokens=5)
    parts = list(gen)
    assert gen.usage.completion_tokens <= 5 and gen.usage.finish_reason in ("length", "stop")
    assert "".join(parts) == gen.text


def test_cancel_stops_within_one_token(engine) -> None:
    eng, _, _ = engine
    gen = eng.complete("the cat", temperature=0, max_tokens=40, ignore_eos=True)
    n = 0
    for _ in gen:
        n += 1
        if n == 2:
            gen.cancel()
    assert gen.usage.finish_reason == "cancelled"
    assert gen.usage.completion_tokens <= 3


def test_seed_reproducible_and_seeds_differ(engine) -> None:
    eng, _, _ = engine
    b = eng.backend
    prompt = b.tokenize("a dog ran", add_bos=True)

    def run(seed: int) -> list[int]:
        p = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, seed=seed, max_tokens=12,
                           ignore_eos=True)
        return take(b.generate_tokens(prompt, p, threading.Event()), 12)

    assert run(7) == run(7)
    assert len({tuple(run(s)) for s in range(4)}) > 1


def test_stops_at_eos(tiny_hf) -> None:
    eng = minicpm.load(str(tiny_hf("dense_tied").path), backend="torch", n_ctx=32)
    # Make EOS (id 2) the argmax everywhere by boosting its (tied) embedding row.
    emb = eng.backend.model.embed_tokens.weight
    with torch.no_grad():
        emb[2] = eng.backend.model.norm.weight * 50
    params = SamplingParams(temperature=0, max_tokens=8)
    out = list(eng.backend.generate_tokens([1, 5, 6], params, threading.Event()))
    assert out == []


def test_chat_renders_minicpm_template(engine) -> None:
    """chat() = MiniCPM's template → tokens (BOS first) → greedy tokens of the reference →
    their bytes, leading space dropped, cut at a stop string."""
    eng, cfg, wts = engine
    b = eng.backend
    msgs = [{"role": "user", "content": " hello "}]
    assert eng.render(msgs) == "<用户>hello<AI>"
    prompt = b.tokenize("<用户>hello<AI>", add_bos=True)
    assert prompt[0] == 1 and b.tok.piece(prompt[1]) == "<用户>" and b.tok.piece(prompt[-1]) == "<AI>"
    gen = eng.chat(msgs, temperature=0, max_tokens=5, ignore_eos=True)
    text = gen.read()
    assert gen.usage.prompt_tokens == len(prompt) and gen.usage.completion_tokens >= 1
    expect = b"".join(b.tok.token_bytes(t) for t in greedy_reference(cfg, wts, prompt, 5))
    want = expect.decode("utf-8", errors="replace")
    for stop in templates.stop_strings(b.chat_template):
        want = want.split(stop)[0]
    assert text == want.lstrip() and text


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0, repetition_penalty=1.3),
    SamplingParams(temperature=0.8, top_k=5, top_p=0.9, repetition_penalty=1.2),
    SamplingParams(temperature=1.0, top_k=0, top_p=0.5),
])
def test_device_sampler_support_matches_reference(params: SamplingParams) -> None:
    """Every token the device sampler draws has nonzero probability under the numpy reference
    sampler's filtered distribution (greedy: identical choice)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(50).astype(np.float32) * 3
    history = [3, 4, 5]
    s = Sampler(SamplingParams(**{**params.__dict__, "seed": 1}), 50, torch.device("cpu"),
                history)
    if params.greedy:
        ref = sample_token(logits, params, np.random.default_rng(0), history)
        assert int(s(torch.from_numpy(logits))) == ref
        return
    allowed = {sample_token(logits, params, np.random.default_rng(i), history) for i in range(400)}
    for _ in range(100):
        s2 = Sampler(SamplingParams(**{**params.__dict__, "seed": int(rng.integers(1 << 30))}),
                     50, torch.device("cpu"), history)
        assert int(s2(torch.from_numpy(logits))) in allowed
