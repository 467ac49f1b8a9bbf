"""llama.cpp runs tiny random MiniCPM GGUF files (written here with gguf-py) with the same
numbers as a float64 numpy reference built from MiniCPM's formulas: dense tied, GQA, untied,
MoE (8 experts, top-2), and the llama-format. Both raw llama-cpp-python and our engine."""

from __future__ import annotations

import threading
from typing import Any

import llama_cpp  # a dependency of the project: missing is a failure, not a skip
import numpy as np
import pytest

from minicpm.testing import TinyConfig, forward, greedy, hf_tokenizer, rel_error, tiny_vocab
from minicpm.testing.gguf_writer import dequantized_weights

ARCHS = ["dense_tied", "gqa", "untied", "moe"]
PROMPT = "hello world, the data plot is not what you import"
N_NEW = 12
GGML_TYPE_F32 = 0


def raw_llama(path: Any, f32_kv: bool = False) -> Any:
    kw = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if f32_kv else {}
    return llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, n_threads_batch=2,
                           logits_all=True, verbose=False, **kw)


def prompt_ids(cfg: TinyConfig, text: str = PROMPT) -> list[int]:
    """BOS + the HF tokenizer's ids; the tests check llama.cpp tokenizes to the same."""
    tok = hf_tokenizer(tiny_vocab(cfg.vocab_size))
    return [tok.token_to_id("<s>"), *tok.encode(text, add_special_tokens=False).ids]


def raw_logits(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def last_logits(llm: Any) -> np.ndarray:
    """The last evaluated position's logits, also when the context keeps no per-token scores
    (logits_all=False, as the engine runs it)."""
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)


def assert_same_argmax(got: np.ndarray, ref: np.ndarray) -> None:
    """Same next-token choice at every position, except at a reference near-tie narrower than
    twice the measured error of that row."""
    for pos, (g, r) in enumerate(zip(got, ref, strict=True)):
        if g.argmax() != r.argmax():
            gap = r.max() - r[g.argmax()]
            assert gap < 2 * np.abs(g - r).max(), f"position {pos}: argmax differs by {gap}"


def assert_greedy(cfg: TinyConfig, weights: dict[str, np.ndarray], ids: list[int],
                  got: list[int]) -> None:
    """Every generated token is the reference's argmax given the tokens before it (teacher
    forcing). With an f16 KV cache the engine's logits are off by a few 1e-4 of their spread, so
    at a near-tie a token whose reference logit is within 2e-3·std of the maximum is accepted."""
    assert len(got) == N_NEW
    logits = forward(cfg, weights, ids + got)[len(ids) - 1: len(ids) - 1 + len(got)]
    for step, (row, tok) in enumerate(zip(logits, got, strict=True)):
        best = int(row.argmax())
        assert tok == best or row[best] - row[tok] < 2e-3 * row.std(), (
            f"step {step}: engine chose {tok} (logit {row[tok]:.5f}), reference {best} "
            f"({row[best]:.5f}); reference greedy {greedy(cfg, weights, ids, N_NEW)}, got {got}")


@pytest.mark.parametrize("arch", ARCHS + ["llama_format"])
def test_raw_llamacpp_logits_match_reference(tiny_gguf: Any, arch: str) -> None:
    m = tiny_gguf(arch)
    ids = prompt_ids(m.cfg)
    llm = raw_llama(m.path)
    try:
        # Same text, same ids: the tiny SentencePiece vocabulary tokenizes alike in both.
        assert llm.tokenize(PROMPT.encode(), add_bos=True, special=True) == ids
        ref = forward(m.cfg, m.weights, ids)
        got = raw_logits(llm, ids)
        # Default f16 KV cache: rounding K and V to f16 costs a few 1e-4.
        assert rel_error(got, ref) < 1e-3
        assert_same_argmax(got, ref)
    finally:
        llm.close()


@pytest.mark.parametrize("arch", ARCHS)
def test_raw_llamacpp_f32_kv_is_float32_exact(tiny_gguf: Any, arch: str) -> None:
    """With an f32 KV cache the only difference left is float32 arithmetic (~1e-7): any formula
    slip (a scale, the rope permutation, MoE renormalisation) would show far above that."""
    m = tiny_gguf(arch)
    ids = prompt_ids(m.cfg)
    llm = raw_llama(m.path, f32_kv=True)
    try:
        assert rel_error(raw_logits(llm, ids), forward(m.cfg, m.weights, ids)) < 1e-5
    finally:
        llm.close()


@pytest.mark.parametrize(("dtype", "tol"), [("f16", 1e-3), ("q8_0", 0.05)])
def test_quantized_files_match_reference_on_their_weights(tiny_gguf: Any, dtype: str,
                                                          tol: float) -> None:
    """f16 / Q8_0 files against the reference run on the same rounded weights (Q8_0 also
    quantizes activations inside llama.cpp's matmuls, hence the looser bound)."""
    m = tiny_gguf("gqa", dtype=dtype)
    ids = prompt_ids(m.cfg)
    llm = raw_llama(m.path, f32_kv=True)
    try:
        ref = forward(m.cfg, dequantized_weights(m.cfg, m.weights, dtype), ids)
        assert rel_error(raw_logits(llm, ids), ref) < tol
    finally:
        llm.close()


@pytest.mark.parametrize("arch", ARCHS)
def test_raw_llamacpp_greedy_matches_reference(tiny_gguf: Any, arch: str) -> None:
    m = tiny_gguf(arch)
    ids = prompt_ids(m.cfg)
    llm = raw_llama(m.path)
    try:
        got = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            got.append(int(tok))
            if len(got) == N_NEW:
                break
    finally:
        llm.close()
    assert_greedy(m.cfg, m.weights, ids, got)


def test_llama_format_folding_is_equivalent() -> None:
    """MiniCPM's llama-format (μP scalars folded into the weights) computes the same logits."""
    from minicpm.testing import random_weights, to_llama_format

    cfg = TinyConfig.untied()
    w = random_weights(cfg, 3)
    lcfg, lw = to_llama_format(cfg, w)
    ids = prompt_ids(cfg)
    assert rel_error(forward(lcfg, lw, ids), forward(cfg, w, ids)) < 1e-6


# --- through the engine ------------------------------------------------------------------------

def _engine(path: Any, **kw: Any) -> Any:
    import minicpm

    return minicpm.load(str(path), backend="llama.cpp", n_ctx=64, n_threads=2, **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_greedy_matches_reference(tiny_gguf: Any, arch: str) -> None:
    from minicpm.sampling import SamplingParams

    m = tiny_gguf(arch)
    ids = prompt_ids(m.cfg)
    with _engine(m.path) as engine:
        assert engine.info.architecture == ("minicpm" if m.cfg.is_minicpm else "llama")
        assert engine.info.extra.get("mup_repaired", []) == []
        assert engine.backend.tokenize(PROMPT, add_bos=True) == ids
        params = SamplingParams(temperature=0.0, max_tokens=N_NEW, ignore_eos=True)
        pairs = list(engine.backend.generate_tokens(ids, params, threading.Event()))[:N_NEW]
        got = [t for t, *_ in pairs]  # (id, bytes[, logprob entry])
        assert_greedy(m.cfg, m.weights, ids, got)
        # engine.complete at temperature 0 streams exactly those tokens' text.
        text = engine.complete(PROMPT, temperature=0, max_tokens=N_NEW, ignore_eos=True).read()
        assert text == b"".join(p[1] for p in pairs).decode("utf-8", errors="replace")


def test_engine_logits_match_reference(tiny_gguf: Any) -> None:
    """The engine's own llama.cpp context (its options, its KV cache) gives the reference's
    next-token logits."""
    m = tiny_gguf("moe")
    ids = prompt_ids(m.cfg)
    with _engine(m.path) as engine:
        llm = engine.backend.llm
        llm.reset()
        llm.eval(ids)
        last = last_logits(llm)
    assert rel_error(last, forward(m.cfg, m.weights, ids)[-1]) < 1e-3
