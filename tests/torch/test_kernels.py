"""Each fused op's torch twin vs a float64 numpy reference; int8/int4 error bounds; on a GPU,
the Triton kernels vs the twins and the CUDA-graph decode vs eager."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from minicpm.torch import kernels
from minicpm.torch.quantize import (
    Int4Linear,
    Int8Linear,
    quantize_int4,
    quantize_int8,
    quantize_model,
)

rng = np.random.default_rng(0)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def f64(t: torch.Tensor) -> np.ndarray:
    return t.double().cpu().numpy()


def test_dispatch_follows_minicpm_triton() -> None:
    """MINICPM_TRITON picks the path for CPU tensors: "interpret" (test_forced_triton's inner
    run) sends them to the Triton kernels, anything else keeps the twins."""
    x = torch.ones(2, 8)
    tk = kernels._use_triton(x)
    if os.environ.get("MINICPM_TRITON") == "interpret":
        assert tk is not None and tk.__name__.endswith("triton_kernels")
    else:
        assert tk is None


def test_device_context_selects_the_model_device() -> None:
    """Triton launches, streams and graph capture follow the *current* CUDA device: the model's
    device is made current for them. Building the context needs no GPU."""
    ctx = kernels.device_context(torch.device("cuda:1"))
    assert isinstance(ctx, torch.cuda.device) and ctx.idx == 1
    assert kernels.device_context("cuda:0").idx == 0
    assert not isinstance(kernels.device_context("cpu"), torch.cuda.device)


def test_generator_runs_prefill_and_decode_under_the_model_device(tiny_hf, monkeypatch) -> None:
    from minicpm.sampling import SamplingParams
    from minicpm.torch.generate import Generator
    from minicpm.torch.loader import load_model

    seen = []
    real = kernels.device_context

    def record(device):
        seen.append(torch.device(device))
        return real(device)

    monkeypatch.setattr(kernels, "device_context", record)
    model, _ = load_model(tiny_hf("gqa").path)
    gen = Generator(model, 32, cuda_graph=False)
    out = list(gen.generate([1, 5, 9], SamplingParams(temperature=0, ignore_eos=True),
                            max_new=4))
    assert len(out) == 4
    # cache set-up, one prefill, three decode steps: each under the model's device
    assert seen == [torch.device("cpu")] * 5


def test_add_rms_norm_twin() -> None:
    x, d, w = (rng.standard_normal(s) for s in [(3, 5, 64), (3, 5, 64), (64,)])
    tx, th = kernels.add_rms_norm_torch(*(torch.tensor(a, dtype=torch.float32) for a in (x, d)),
                                        0.3, torch.tensor(w, dtype=torch.float32), 1e-5)
    rx = x + 0.3 * d
    rh = rx / np.sqrt((rx**2).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(f64(tx), rx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f64(th), rh, rtol=1e-4, atol=1e-5)


def test_rope_twin() -> None:
    b, h, t, d = 1, 2, 7, 16
    q = rng.standard_normal((b, h, t, d))
    ang = np.arange(t)[:, None] * 10000.0 ** (-np.arange(0, d, 2) / d)
    # reference in the complex form: pairs (i, i + d/2) rotate by angle
    z = (q[..., : d // 2] + 1j * q[..., d // 2:]) * np.exp(1j * ang)
    ref = np.concatenate([z.real, z.imag], -1)
    emb = torch.tensor(np.concatenate([ang, ang], -1), dtype=torch.float32)
    tq, _ = kernels.rope_torch(torch.tensor(q, dtype=torch.float32),
                               torch.tensor(q, dtype=torch.float32), emb.cos(), emb.sin())
    np.testing.assert_allclose(f64(tq), ref, rtol=1e-5, atol=1e-5)


def test_swiglu_twin() -> None:
    g, u = rng.standard_normal((2, 33)), rng.standard_normal((2, 33))
    got = kernels.swiglu_torch(torch.tensor(g), torch.tensor(u))
    np.testing.assert_allclose(f64(got), g / (1 + np.exp(-g)) * u, rtol=1e-12)


def test_int8_error_within_bound() -> None:
    w = torch.randn(48, 256, generator=torch.Generator().manual_seed(0))
    q, s = quantize_int8(w)
    deq = q.float() * s[:, None]
    bound = w.abs().amax(1, keepdim=True) / 254 + 1e-7  # half a step per row
    assert bool(((deq - w).abs() <= bound).all())
    x = torch.randn(3, 256)
    np.testing.assert_allclose(f64(kernels.int8_matmul_torch(x, q, s)), f64(x) @ f64(deq).T,
                               rtol=1e-4, atol=1e-4)


def test_int4_error_within_bound() -> None:
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    packed, s, z = quantize_int4(w, group=64)
    assert packed.dtype == torch.uint8 and packed.shape == (32, 128)
    deq = kernels.dequant_int4(packed, s, z, 64, torch.float32)
    g = w.view(32, 4, 64)
    step = ((g.amax(-1).clamp(min=0) - g.amin(-1).clamp(max=0)) / 15)[..., None]
    err = (deq.view(32, 4, 64) - g).abs()
    assert bool((err <= step + 1e-6).all())  # ≤ one step: s/2 rounding + s/2 from the zero
    rel = (deq - w).norm() / w.norm()
    assert rel < 0.12  # typical relative Frobenius error of 4-bit group-64 on Gaussian weights


def test_quantized_model_logits_stay_close(tiny_hf) -> None:
    from minicpm.torch.loader import load_model

    folder = tiny_hf("dense_tied", hidden_size=128, intermediate_size=256).path
    tokens = torch.tensor([[1, 5, 9, 13, 2, 7]])
    model, _ = load_model(folder)
    with torch.inference_mode():
        ref = model(tokens)
    for mode, tol in (("int8", 0.02), ("int4", 0.25)):
        m, _ = load_model(folder)
        n = quantize_model(m, mode, group=64)
        assert n == 2 * 7  # q k v o gate up down per layer; tied head stays dense
        assert any(isinstance(x, Int8Linear if mode == "int8" else Int4Linear)
                   for x in m.modules())
        with torch.inference_mode():
            got = m(tokens)
        assert float((got - ref).abs().max() / ref.abs().max()) < tol, mode


# --- GPU: Triton vs twins, CUDA graph vs eager ------------------------------------------------
@pytest.mark.gpu
@requires_cuda
def test_triton_kernels_match_twins() -> None:
    from minicpm.torch import triton_kernels as tk

    dev, dt = "cuda", torch.bfloat16
    x, d = torch.randn(4, 2304, device=dev, dtype=dt), torch.randn(4, 2304, device=dev, dtype=dt)
    w = torch.randn(2304, device=dev, dtype=dt)
    for a, b in zip(tk.add_rms_norm(x, d, 0.22, w, 1e-5),
                    kernels.add_rms_norm_torch(x, d, 0.22, w, 1e-5), strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
    q = torch.randn(1, 36, 5, 64, device=dev, dtype=dt)
    ang = torch.randn(5, 32, device=dev)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    torch.testing.assert_close(tk.rope(q, q, cos, sin)[0], kernels.rope_torch(q, q, cos, sin)[0],
                               rtol=2e-2, atol=2e-2)
    g, u = torch.randn(3, 5760, device=dev, dtype=dt), torch.randn(3, 5760, device=dev, dtype=dt)
    torch.testing.assert_close(tk.swiglu(g, u), kernels.swiglu_torch(g, u), rtol=2e-2, atol=2e-2)
    wt = torch.randn(5760, 2304, device=dev)
    xq = torch.randn(1, 2304, device=dev, dtype=dt)
    q8, s8 = quantize_int8(wt)
    torch.testing.assert_close(tk.int8_matmul(xq, q8, s8.to(dt)),
                               kernels.int8_matmul_torch(xq, q8, s8.to(dt)), rtol=3e-2, atol=3e-1)
    p4, s4, z4 = quantize_int4(wt, 128)
    torch.testing.assert_close(tk.int4_matmul(xq, p4, s4.to(dt), z4.to(dt), 128),
                               kernels.int4_matmul_torch(xq, p4, s4.to(dt), z4.to(dt), 128),
                               rtol=3e-2, atol=3e-1)


GPU_DEVICES = ["cuda"] + (["cuda:1"] if torch.cuda.is_available()
                          and torch.cuda.device_count() > 1 else [])


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("device", GPU_DEVICES)
@pytest.mark.parametrize("quant", [None, "int8", "int4"])
@pytest.mark.parametrize("name", ["dense_tied", "gqa", "moe", "rope128k", "llama_format"])
def test_cuda_graph_decode_matches_eager(tiny_hf, name: str, quant: str | None,
                                         device: str) -> None:
    """Every preset, dense/int8/int4, on cuda and (with two GPUs) cuda:1: the captured decode
    gives the eager path's greedy tokens (float32 compute, so that the eager path's trimmed
    attention and the graph's masked full-cache attention cannot split a near-tie). On cuda:1,
    a kernel or stream on the wrong device would fault or read garbage."""
    import threading

    import minicpm
    from minicpm.sampling import SamplingParams

    # int4 groups of 128 need in_features of 128 / 256
    folder = tiny_hf(name, seed=3, scale_emb=1.0, scale_depth=8.0, hidden_size=128,
                     intermediate_size=256).path
    p = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    outs = []
    for graph in (False, True):
        eng = minicpm.load(str(folder), backend="torch", device=device, dtype="float32",
                           quant=quant, cuda_graph=graph, n_ctx=64)
        assert eng.info.extra["cuda_graph"] is graph
        assert next(eng.backend.model.parameters()).device == torch.device(device)
        toks = eng.backend.generate_tokens([1, 5, 9, 40, 41], p, threading.Event())
        outs.append([t for _, (t, _b) in zip(range(20), toks, strict=False)])
        eng.close()
    assert outs[0] == outs[1] and len(outs[0]) == 20
