"""Every Triton kernel run on CPU by Triton's interpreter (TRITON_INTERPRET=1, set by
tests/conftest.py on machines without a GPU), against its torch
twin and a float64 formula, at MiniCPM-2B / -1B shapes, an lm_head slice and odd sizes, in
fp32, bf16 and fp16, with guard zones around every output (nothing written out of bounds).

Tolerances, per output element, in units of the output dtype's ulp at the reference value:
the interpreter converts fp32 → bf16 by truncation (a GPU rounds to nearest), so a bf16 result
may sit 1 ulp away where a GPU gives ½; fp16 and fp32 round to nearest. Where a kernel first
stores the rounded residual and then normalises it, that rounding counts once more. Dot
products add fp32 accumulation error, 8·√K·ε₃₂·Σ|w·x| (a statistical bound: the worst case
K·ε₃₂ would be loose enough to hide an indexing bug)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import minicpm.torch as mt
from minicpm.torch import kernels
from minicpm.torch.quantize import quantize_int4, quantize_int8

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
GUARD = 37  # elements of NaN before and after every output
EPS32 = 2.0 ** -23


@pytest.fixture(scope="module")
def tk():
    """minicpm/torch/triton_kernels.py under Triton's interpreter. tests/conftest.py sets
    TRITON_INTERPRET=1 on machines without a GPU before anything imports triton (torch imports
    it by itself): the interpreter is chosen at import, once per process."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: `pytest -m gpu tests/torch` runs the compiled kernels")
    import triton
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton.language.standard.sum, InterpretedFunction):
        raise RuntimeError("triton was imported without TRITON_INTERPRET=1 (tests/conftest.py "
                           "sets it; something imported triton before it ran)")
    path = Path(mt.__file__).with_name("triton_kernels.py")
    spec = importlib.util.spec_from_file_location("_minicpm_triton_interpreted", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# --- helpers ------------------------------------------------------------------------------------
def guarded(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    n = math.prod(shape)
    base = torch.full((n + 2 * GUARD,), float("nan"), dtype=dtype)
    return base, base[GUARD:GUARD + n].view(shape)


def check_guard(base: torch.Tensor, out: torch.Tensor) -> None:
    assert bool(torch.isnan(base[:GUARD]).all()), "written before the output"
    assert bool(torch.isnan(base[GUARD + out.numel():]).all()), "written past the output"
    assert bool(torch.isfinite(out).all()), "output not fully written"


def ulp(ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype` at |ref| (float64), floored at the smallest normal."""
    fi = torch.finfo(dtype)
    mag = ref.abs().clamp(min=fi.tiny)
    return torch.exp2(torch.floor(torch.log2(mag)) - (fi.nmant if hasattr(fi, "nmant")
                                                        else _mant(dtype)))


def _mant(dtype: torch.dtype) -> int:
    return {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}[dtype]


def out_ulps(dtype: torch.dtype) -> float:
    """Output rounding allowed, in ulps: truncating bf16 in the interpreter, nearest otherwise."""
    return 1.0 if dtype == torch.bfloat16 else 0.5


def assert_within(got: torch.Tensor, ref: torch.Tensor, bound: torch.Tensor, what: str) -> None:
    err = (got.double() - ref).abs()
    bad = err > bound
    assert not bool(bad.any()), (
        f"{what}: {int(bad.sum())} of {bad.numel()} elements out of bound; worst excess "
        f"{float((err / bound).max()):.2f}x the bound")


def randn(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


# --- add + RMSNorm, RMSNorm ---------------------------------------------------------------------
ROW_SHAPES = [(1, 2304), (2, 2304), (16, 2304), (1, 1536), (16, 1536), (1, 1), (3, 1000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_add_rms_norm_and_rms_norm(tk, dtype: torch.dtype) -> None:
    eps, scale = 1e-5, 1.4 / math.sqrt(40)
    for i, (rows, n) in enumerate(ROW_SHAPES):
        x, d = randn(rows, n, dtype=dtype, seed=i), randn(rows, n, dtype=dtype, seed=100 + i)
        w = (1 + randn(n, dtype=torch.float32, seed=200 + i, scale=0.1)).to(dtype)
        bx, ox = guarded((rows, n), dtype)
        bh, oh = guarded((rows, n), dtype)
        gx, gh = tk.add_rms_norm(x, d, scale, w, eps, out_x=ox, out_h=oh)
        check_guard(bx, ox)
        check_guard(bh, oh)
        # float64 formula; the new residual is rounded to the storage dtype before the norm
        x64 = x.double() + d.double() * scale
        xr = x64.to(dtype).double()
        h64 = xr * torch.rsqrt((xr * xr).mean(-1, keepdim=True) + eps) * w.double()
        k = out_ulps(dtype)
        fp32_err = 4 * EPS32 * (x.double().abs() + (d.double() * scale).abs())  # computed in fp32
        assert_within(gx, x64, k * ulp(x64, dtype) + fp32_err, f"x {rows}x{n}")
        # h inherits the stored residual's rounding (relative ≤ k·2^-mant, up to 2k of its own
        # ulps) plus its own: 3k ulps; and the residual's fp32 error, carried through the norm.
        r_w = torch.rsqrt((xr * xr).mean(-1, keepdim=True) + eps) * w.double().abs()
        assert_within(gh, h64, 3 * k * ulp(h64, dtype) + 1e-5 * h64.abs() + fp32_err * r_w,
                      f"h {rows}x{n}")
        # The twin rounds delta*scale to the dtype before adding: that extra error, carried
        # through the norm, is its own term (large where x + delta*scale nearly cancels).
        tx, th = kernels.add_rms_norm_torch(x, d, scale, w, eps)
        extra_x = ulp(d.double() * scale, dtype) * (dtype != torch.float32) + fp32_err
        extra_h = extra_x * r_w
        assert_within(gx, tx.double(), 2 * k * ulp(x64, dtype) + fp32_err + extra_x,
                      f"x vs twin {rows}x{n}")
        assert_within(gh, th.double(), 4 * k * ulp(h64, dtype) + 1e-5 * h64.abs() + 2 * extra_h,
                      f"h vs twin {rows}x{n}")
        # plain RMSNorm (no delta): the same kernel with HAS_DELTA off
        bn, on = guarded((rows, n), dtype)
        tk.rms_norm(x, w, eps, out_h=on)
        check_guard(bn, on)
        xd = x.double()
        n64 = xd * torch.rsqrt((xd * xd).mean(-1, keepdim=True) + eps) * w.double()
        assert_within(on, n64, k * ulp(n64, dtype) + 1e-5 * n64.abs(), f"norm {rows}x{n}")
        assert_within(on, kernels.rms_norm_torch(x, w, eps).double(),
                      2 * k * ulp(n64, dtype) + 1e-5 * n64.abs(), f"norm vs twin {rows}x{n}")


# --- RoPE ---------------------------------------------------------------------------------------
# (batch, q heads, kv heads, positions, head_dim): MiniCPM-2B (36 × 64), -1B (24 q / 8 kv),
# prefill chunks of 2 and 16 positions, and odd small ones.
ROPE_SHAPES = [(1, 36, 36, 1, 64), (1, 36, 36, 16, 64), (1, 24, 8, 1, 64), (1, 24, 8, 2, 64),
               (2, 3, 1, 5, 16), (1, 1, 1, 1, 2)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rope_q_and_k(tk, dtype: torch.dtype) -> None:
    for i, (b, hq, hk, t, d) in enumerate(ROPE_SHAPES):
        q, k = randn(b, hq, t, d, dtype=dtype, seed=i), randn(b, hk, t, d, dtype=dtype, seed=50 + i)
        pos = torch.arange(100, 100 + t, dtype=torch.float64)
        inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        ang = torch.cat([pos[:, None] * inv] * 2, -1)
        cos, sin = ang.cos().float(), ang.sin().float()
        bq, oq = guarded(tuple(q.shape), dtype)
        bk, ok = guarded(tuple(k.shape), dtype)
        tk.rope(q, k, cos, sin, out_q=oq, out_k=ok)
        check_guard(bq, oq)
        check_guard(bk, ok)
        tq, tkk = kernels.rope_torch(q, k, cos, sin)
        for name, x, got, twin in (("q", q, oq, tq), ("k", k, ok, tkk)):
            x64, c, s = x.double(), cos.double(), sin.double()
            x1, x2 = x64[..., : d // 2], x64[..., d // 2:]
            ref = torch.cat([x1 * c[:, : d // 2] - x2 * s[:, : d // 2],
                             x2 * c[:, d // 2:] + x1 * s[:, d // 2:]], -1)
            c1, s1 = c[:, : d // 2].abs(), s[:, : d // 2].abs()
            mag = torch.cat([x1.abs() * c1 + x2.abs() * s1, x2.abs() * c1 + x1.abs() * s1], -1)
            kk = out_ulps(dtype)
            assert_within(got, ref, kk * ulp(mag, dtype) + 8 * EPS32 * mag, f"{name} {x.shape}")
            assert_within(got, twin.double(), 2 * kk * ulp(mag, dtype) + 8 * EPS32 * mag,
                          f"{name} vs twin {x.shape}")


def test_rope_falls_back_to_the_twin_for_other_head_dims(tk, monkeypatch) -> None:
    """head_dim // 2 must be a power of two for the kernel's tl.arange; 80 or 96 (as some
    models have) take the twin, 64 the kernel."""
    assert [kernels.rope_triton_ok(d) for d in (2, 64, 128, 80, 96, 63, 0)] == [
        True, True, True, False, False, False, False]
    calls = []

    def spy(*a, **kw):
        calls.append(a[0].shape[-1])
        return tk.rope(*a, **kw)

    monkeypatch.setattr(kernels, "triton_mode", lambda: "interpret")
    monkeypatch.setattr(kernels, "_triton", lambda: type("TK", (), {"rope": staticmethod(spy)}))
    for d in (80, 64):
        q = randn(1, 2, 3, d, dtype=torch.float32, seed=d)
        ang = torch.randn(3, d // 2, generator=torch.Generator().manual_seed(1))
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        got = kernels.rope(q, q, cos, sin)[0]
        torch.testing.assert_close(got, kernels.rope_torch(q, q, cos, sin)[0], rtol=1e-6,
                                   atol=1e-6)
    assert calls == [64]


# --- SwiGLU -------------------------------------------------------------------------------------
SWIGLU_SHAPES = [(1, 5760), (2, 5760), (16, 5760), (1, 3840), (16, 3840), (1, 1), (3, 1000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_swiglu(tk, dtype: torch.dtype) -> None:
    for i, shape in enumerate(SWIGLU_SHAPES):
        g, u = randn(*shape, dtype=dtype, seed=i, scale=3), randn(*shape, dtype=dtype, seed=9 + i)
        base, out = guarded(shape, dtype)
        tk.swiglu(g, u, out=out)
        check_guard(base, out)
        g64, u64 = g.double(), u.double()
        ref = g64 * torch.sigmoid(g64) * u64
        k = out_ulps(dtype)
        assert_within(out, ref, k * ulp(ref, dtype) + 1e-6 * ref.abs() + 1e-30, f"{shape}")
        assert_within(out, kernels.swiglu_torch(g, u).double(),
                      (k + 1) * ulp(ref, dtype) + 1e-6 * ref.abs() + 1e-30, f"twin {shape}")


# --- weight-only GEMVs --------------------------------------------------------------------------
# (rows of x, N, K, dtypes). Full MiniCPM shapes in bf16 (the dtype they run in) and one other;
# an lm_head slice (1,153 of the 122,753 rows: the whole head would take minutes here); odd
# sizes in every dtype: N and K not multiples of the blocks (64 rows, 128 / 2×64 columns), the
# last int4 group partial (K=300, group 128), 1×2; x with 1, 2 and 16 rows.
BF16 = [torch.bfloat16]
GEMV_CASES = [
    (1, 5760, 2304, BF16),          # MiniCPM-2B gate/up
    (1, 3840, 1536, BF16),          # MiniCPM-1B gate/up
    (1, 1153, 2304, BF16),          # lm_head slice (vocab 122,753)
    (1, 77, 300, DTYPES),
    (2, 200, 320, DTYPES),
    (16, 65, 260, [torch.bfloat16, torch.float32]),
    (1, 1, 2, DTYPES),
]
INT8_ONLY = [(1, 1536, 3840, [torch.float16])]  # MiniCPM-1B down (int4 would add ~10 s)


def _gemv_bound(x: torch.Tensor, w64: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype,
                ulps: float) -> torch.Tensor:
    sumabs = x.double().abs() @ w64.abs().T
    k = w64.shape[1]
    return ulps * ulp(ref, dtype) + 8 * math.sqrt(k) * EPS32 * sumabs + 1e-30


@pytest.mark.parametrize("case", GEMV_CASES + INT8_ONLY, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}")
def test_int8_gemv(tk, case) -> None:
    m, n, k, dtypes = case
    w = randn(n, k, dtype=torch.float32, seed=n + k, scale=0.05)
    q, s = quantize_int8(w)
    for dtype in dtypes:
        x = randn(m, k, dtype=dtype, seed=m)
        sd = s.to(dtype)
        base, out = guarded((m, n), dtype)
        tk.int8_matmul(x, q, sd, out=out)
        check_guard(base, out)
        w64 = q.double() * sd.double()[:, None]
        ref = x.double() @ w64.T
        assert_within(out, ref, _gemv_bound(x, w64, ref, dtype, out_ulps(dtype)),
                      f"{m}x{n}x{k} {dtype}")
        twin = kernels.int8_matmul_torch(x, q, sd).double()  # rounds twice: matmul, then scale
        assert_within(out, twin, _gemv_bound(x, w64, ref, dtype, 3), f"twin {m}x{n}x{k} {dtype}")


@pytest.mark.parametrize("case", GEMV_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}")
def test_int4_gemv(tk, case) -> None:
    m, n, k, dtypes = case
    group = 128 if k >= 128 else k
    w = randn(n, k, dtype=torch.float32, seed=n * k, scale=0.05)
    packed, s, z = quantize_int4(w, group)
    assert s.shape == (n, -(-k // group))
    for dtype in dtypes:
        x = randn(m, k, dtype=dtype, seed=m + 1)
        sd, zd = s.to(dtype), z.to(dtype)
        base, out = guarded((m, n), dtype)
        tk.int4_matmul(x, packed, sd, zd, group, out=out)
        check_guard(base, out)
        w64 = kernels.dequant_int4(packed, sd.double(), zd.double(), group, torch.float64)
        ref = x.double() @ w64.T
        assert_within(out, ref, _gemv_bound(x, w64, ref, dtype, out_ulps(dtype)),
                      f"{m}x{n}x{k} {dtype}")
        # the twin dequantizes into x's dtype: each weight rounded once (ε of the dtype)
        twin = kernels.int4_matmul_torch(x, packed, sd, zd, group).double()
        eps = torch.finfo(dtype).eps
        bound = (_gemv_bound(x, w64, ref, dtype, 2)
                 + eps * (x.double().abs() @ w64.abs().T))
        assert_within(out, twin, bound, f"twin {m}x{n}x{k} {dtype}")


def test_int4_partial_last_group_round_trips() -> None:
    """quantize_int4 / dequant_int4 with K=300, group 128: three groups, the last of 44 columns
    with its own scale; error ≤ one step of its group, as for full groups."""
    w = randn(8, 300, dtype=torch.float32, seed=3)
    packed, s, z = quantize_int4(w, 128)
    assert packed.shape == (8, 150) and s.shape == (8, 3)
    deq = kernels.dequant_int4(packed, s, z, 128, torch.float32)
    last = w[:, 256:]
    step = (last.amax(1).clamp(min=0) - last.amin(1).clamp(max=0)) / 15
    assert bool(((deq[:, 256:] - last).abs() <= step[:, None] + 1e-6).all())
    torch.testing.assert_close(s[:, 2], step.clamp(min=1e-8))
