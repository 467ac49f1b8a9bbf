"""CUDA-graph capture safety, on CPU: exactly the region CUDAGraphDecode captures
(DecodeStep.run) runs under minicpm.testing.capture.CaptureGuard for every model preset and
bf16 / int8 / int4, and must do nothing a capture forbids (host data, host reads, syncing ops,
random draws). This is what found `torch.tensor(rope_theta, device=...)` inside rope_inv_freq:
on CUDA a host-to-device copy, which fails every capture."""

from __future__ import annotations

import pytest
import torch

from minicpm.testing import PRESETS
from minicpm.testing.capture import CaptureGuard
from minicpm.torch.generate import DecodeStep, Generator
from minicpm.torch.loader import load_model
from minicpm.torch.quantize import quantize_model


@pytest.mark.parametrize("quant", ["bf16", "int8", "int4"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_decode_step_is_capture_safe(tiny_hf, name: str, quant: str) -> None:
    m = tiny_hf(name)
    model, _ = load_model(m.path, dtype="bfloat16")
    if quant != "bf16":
        assert quantize_model(model, quant, group=32) > 0
    gen = Generator(model, 32, cuda_graph=False)
    gen.prefill([1, 5, 9, 13], 0)  # a real cache to attend over
    step = DecodeStep(model)
    # past max_position_embeddings for rope128k (16): the dynamic-NTK branch is live
    step.tok.fill_(7)
    step.pos.fill_(20)
    with torch.inference_mode(), CaptureGuard() as guard:
        logits = step.run()
    assert guard.violations == []
    assert logits.shape == (1, 1, m.cfg.vocab_size) and bool(torch.isfinite(logits).all())


def test_guard_catches_what_a_capture_forbids() -> None:
    x = torch.arange(4.0)
    with CaptureGuard() as g:
        torch.tensor(3.0)
        x.sum().item()
        x.nonzero()
        torch.randn(2)
        x.tolist()
    kinds = " | ".join(g.violations)
    for word in ("tensor", "item", "nonzero", "randn", "tolist"):
        assert word in kinds, (word, g.violations)
    with CaptureGuard() as ok:  # device-only maths is fine
        torch.where(x > 1, x * 2.0, 10000.0) ** torch.arange(4.0)
    assert ok.violations == []


def test_guard_catches_the_rope_bug_it_found(tiny_hf, monkeypatch) -> None:
    """The rope_inv_freq this test found (before the fix) put back: the decode step is flagged."""
    from minicpm.torch import model as model_mod

    def old_rope_inv_freq(cfg, seq_len, device):
        d = cfg.head_dim
        exponents = torch.arange(0, d, 2, device=device, dtype=torch.float32) / d
        base = torch.tensor(cfg.rope_theta, device=device, dtype=torch.float32)
        return 1.0 / base ** exponents

    model, _ = load_model(tiny_hf("gqa").path, dtype="bfloat16")
    Generator(model, 32, cuda_graph=False)
    monkeypatch.setattr(model_mod, "rope_inv_freq", old_rope_inv_freq)
    step = DecodeStep(model)
    with torch.inference_mode(), CaptureGuard() as guard:
        step.run()
    assert any(v.startswith("tensor: tensor from host data") for v in guard.violations)
