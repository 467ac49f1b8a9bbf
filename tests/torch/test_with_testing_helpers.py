"""The shared fixtures of minicpm.testing (TinyConfig presets, HF folder with tokenizer, GGUF
writer, float64 reference) through the torch backend: greedy tokens equal the reference's, and
the llama.cpp backend's on the same weights."""

from __future__ import annotations

import threading

import pytest

import minicpm
from minicpm.sampling import SamplingParams

testing = pytest.importorskip("minicpm.testing")
from minicpm.testing import reference, tiny  # noqa: E402

PROMPT = [1, 17, 40, 9, 23, 61]


def _tokens(model: str, backend: str, n: int) -> list[int]:
    eng = minicpm.load(model, backend=backend, n_ctx=64)
    p = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
    out = [t for _, (t, _b) in zip(range(n), eng.backend.generate_tokens(
        PROMPT, p, threading.Event()), strict=False)]
    eng.close()
    return out


@pytest.mark.parametrize("name", list(tiny.PRESETS))
def test_presets_greedy_match_reference_and_llamacpp(tmp_path, name: str) -> None:
    cfg = tiny.preset(name)
    wts = tiny.random_weights(cfg, seed=1)
    folder = tiny.write_hf_folder(cfg, wts, tmp_path / "hf")
    ours = _tokens(str(folder), "torch", 6)
    assert ours == reference.greedy(cfg, wts, PROMPT, 6)
    if name == "rope128k":
        return  # llama.cpp's minicpm arch has no dynamic NTK
    pytest.importorskip("llama_cpp")
    gguf_path = testing.write_gguf(cfg, wts, tmp_path / "m.gguf")
    assert ours == _tokens(str(gguf_path), "llama.cpp", 6)
