"""Triton kernels for CUDA (imported lazily by kernels.py). Each has a plain-torch twin in
kernels.py that defines what it must compute; tests/torch/test_triton_interpreter.py runs them
on CPU under Triton's interpreter (TRITON_INTERPRET=1) against the twins and a float64 formula,
and tests/torch/test_kernels.py on a GPU (marked `gpu`). Every wrapper takes optional output
tensors (the tests surround them with guard zones).

Row-wise kernels (norms, RoPE) take one program per row with the whole row in registers
(hidden ≤ 8192 for every MiniCPM); the GEMVs are for decode (a handful of rows of x), where the
cost is reading the weights once: int8 halves and int4 quarters the bytes of bf16."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


# --- fused residual add + RMSNorm -------------------------------------------------------------
@triton.jit
def _add_rms_norm_kernel(x_ptr, d_ptr, w_ptr, out_x_ptr, out_h_ptr, n_cols, scale, eps,
                         HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_DELTA:
        d = tl.load(d_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        # round the new residual to the storage dtype first, as the twin does
        x = (x + d * scale).to(out_x_ptr.dtype.element_ty).to(tl.float32)
        tl.store(out_x_ptr + row * n_cols + cols, x.to(out_x_ptr.dtype.element_ty), mask=mask)
    var = tl.sum(x * x, axis=0) / n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    h = x * tl.rsqrt(var + eps) * w
    tl.store(out_h_ptr + row * n_cols + cols, h.to(out_h_ptr.dtype.element_ty), mask=mask)


def add_rms_norm(x: Tensor, delta: Tensor, scale: float, weight: Tensor, eps: float,
                 out_x: Tensor | None = None, out_h: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
    shape = x.shape
    x2, d2 = x.reshape(-1, shape[-1]).contiguous(), delta.reshape(-1, shape[-1]).contiguous()
    out_x = torch.empty_like(x2) if out_x is None else out_x
    out_h = torch.empty_like(x2) if out_h is None else out_h
    n = shape[-1]
    _add_rms_norm_kernel[(x2.shape[0],)](x2, d2, weight, out_x, out_h, n, float(scale), eps,
                                         HAS_DELTA=True, BLOCK=triton.next_power_of_2(n))
    return out_x.view(shape), out_h.view(shape)


def rms_norm(x: Tensor, weight: Tensor, eps: float, out_h: Tensor | None = None) -> Tensor:
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]).contiguous()
    out_h = torch.empty_like(x2) if out_h is None else out_h
    n = shape[-1]
    _add_rms_norm_kernel[(x2.shape[0],)](x2, x2, weight, x2, out_h, n, 1.0, eps,
                                         HAS_DELTA=False, BLOCK=triton.next_power_of_2(n))
    return out_h.view(shape)


# --- RoPE (rotate-half, fp32 maths) -----------------------------------------------------------
@triton.jit
def _rope_kernel(x_ptr, out_ptr, cos_ptr, sin_ptr, seq_len, head_dim,
                 HALF: tl.constexpr):
    row = tl.program_id(0)  # over batch * heads * seq
    t = row % seq_len
    i = tl.arange(0, HALF)
    base = x_ptr + row * head_dim
    x1 = tl.load(base + i).to(tl.float32)
    x2 = tl.load(base + HALF + i).to(tl.float32)
    c = tl.load(cos_ptr + t * head_dim + i)
    s = tl.load(sin_ptr + t * head_dim + i)
    ob = out_ptr + row * head_dim
    tl.store(ob + i, (x1 * c - x2 * s).to(out_ptr.dtype.element_ty))
    tl.store(ob + HALF + i, (x2 * c + x1 * s).to(out_ptr.dtype.element_ty))


def _rope_one(x: Tensor, cos: Tensor, sin: Tensor, out: Tensor | None = None) -> Tensor:
    b, h, t, d = x.shape
    xc = x.contiguous()
    out = torch.empty_like(xc) if out is None else out
    _rope_kernel[(b * h * t,)](xc, out, cos.contiguous(), sin.contiguous(), t, d, HALF=d // 2)
    return out


def rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, out_q: Tensor | None = None,
         out_k: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """head_dim // 2 must be a power of two (kernels.rope_triton_ok; else use the twin)."""
    return _rope_one(q, cos, sin, out_q), _rope_one(k, cos, sin, out_k)


# --- SwiGLU -----------------------------------------------------------------------------------
@triton.jit
def _swiglu_kernel(g_ptr, u_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def swiglu(gate: Tensor, up: Tensor, out: Tensor | None = None) -> Tensor:
    g, u = gate.contiguous(), up.contiguous()
    out = torch.empty_like(g) if out is None else out
    n = g.numel()
    _swiglu_kernel[(triton.cdiv(n, 1024),)](g, u, out, n, BLOCK=1024)
    return out


# --- weight-only GEMVs ------------------------------------------------------------------------
@triton.jit
def _int8_gemv_kernel(x_ptr, w_ptr, s_ptr, out_ptr, N, K,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    m = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kmask = ks < K
        x = tl.load(x_ptr + m * K + ks, mask=kmask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + rows[:, None] * K + ks[None, :],
                    mask=rmask[:, None] & kmask[None, :], other=0).to(tl.float32)
        acc += tl.sum(w * x[None, :], axis=1)
    s = tl.load(s_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    tl.store(out_ptr + m * N + rows, (acc * s).to(out_ptr.dtype.element_ty), mask=rmask)


def int8_matmul(x: Tensor, w_int8: Tensor, scale: Tensor, out: Tensor | None = None) -> Tensor:
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]).contiguous()
    n, k = w_int8.shape
    out = torch.empty(x2.shape[0], n, dtype=x.dtype, device=x.device) if out is None else out
    grid = (x2.shape[0], triton.cdiv(n, 64))
    _int8_gemv_kernel[grid](x2, w_int8, scale, out, n, k, BLOCK_N=64, BLOCK_K=128)
    return out.view(*shape[:-1], n)


@triton.jit
def _int4_gemv_kernel(x_ptr, p_ptr, s_ptr, z_ptr, out_ptr, N, K, G,
                      BLOCK_N: tl.constexpr, BLOCK_KH: tl.constexpr):
    """packed [N, K/2] uint8 (even column in the low nibble), scales/zeros [N, ceil(K/G)]
    (the last group may be partial)."""
    m = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    kh_total = K // 2
    n_groups = (K + G - 1) // G
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for j0 in range(0, kh_total, BLOCK_KH):
        js = j0 + tl.arange(0, BLOCK_KH)
        jmask = js < kh_total
        m2 = rmask[:, None] & jmask[None, :]
        b = tl.load(p_ptr + rows[:, None] * kh_total + js[None, :], mask=m2, other=0).to(tl.int32)
        lo = (b & 0xF).to(tl.float32)
        hi = (b >> 4).to(tl.float32)
        grp = (2 * js) // G  # both nibbles of a byte share a group (G is even)
        s = tl.load(s_ptr + rows[:, None] * n_groups + grp[None, :], mask=m2, other=0.0)
        z = tl.load(z_ptr + rows[:, None] * n_groups + grp[None, :], mask=m2, other=0.0)
        s = s.to(tl.float32)
        z = z.to(tl.float32)
        xe = tl.load(x_ptr + m * K + 2 * js, mask=jmask, other=0.0).to(tl.float32)
        xo = tl.load(x_ptr + m * K + 2 * js + 1, mask=jmask, other=0.0).to(tl.float32)
        acc += tl.sum(((lo - z) * xe[None, :] + (hi - z) * xo[None, :]) * s, axis=1)
    tl.store(out_ptr + m * N + rows, acc.to(out_ptr.dtype.element_ty), mask=rmask)


def int4_matmul(x: Tensor, packed: Tensor, scales: Tensor, zeros: Tensor, group: int,
                out: Tensor | None = None) -> Tensor:
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]).contiguous()
    n, k = packed.shape[0], packed.shape[1] * 2
    out = torch.empty(x2.shape[0], n, dtype=x.dtype, device=x.device) if out is None else out
    grid = (x2.shape[0], triton.cdiv(n, 64))
    _int4_gemv_kernel[grid](x2, packed, scales, zeros, out, n, k, group,
                            BLOCK_N=64, BLOCK_KH=64)
    return out.view(*shape[:-1], n)
