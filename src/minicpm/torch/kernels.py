"""Fused ops: a plain-torch twin for each (CPU, and the reference for checks), dispatched to a
Triton kernel (`triton_kernels.py`, imported lazily) when the tensor lives on CUDA and Triton is
importable.

MINICPM_TRITON selects the path (read once, at the first call):
- unset or "1": Triton on CUDA tensors, twins elsewhere;
- "0": the twins everywhere;
- "interpret": Triton on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1). Slow;
  it exists so that CI, which has no GPU, runs the kernels' own code (tests/torch).

- add_rms_norm: residual += delta * scale; h = rmsnorm(residual) * w (fp32 variance)
- rope:         rotate-half RoPE of q and k, in fp32 (Triton needs a power-of-two head_dim / 2;
                other head dims use the twin)
- swiglu:       silu(gate) * up
- int8_matmul:  x @ (W_int8 * scale_row)^T (weight-only)
- int4_matmul:  x @ dequant(W_int4, group-wise scale/zero)^T (weight-only)

Triton launches on the *current* CUDA device, whatever device its tensors are on: callers run
the model under ``device_context(model device)`` (generate.Generator does), so that a model on
cuda:1 computes on cuda:1. Switching here, per call, would cost every eager decode step.
"""

from __future__ import annotations

import contextlib
import functools
import os
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def triton_mode() -> str:
    """ "off", "cuda" or "interpret" (see the module docstring); read once."""
    v = os.environ.get("MINICPM_TRITON", "1").strip().lower()
    return {"0": "off", "interpret": "interpret"}.get(v, "cuda")


@functools.cache
def _triton() -> ModuleType | None:
    mode = triton_mode()
    if mode == "off" or (mode == "cuda" and not torch.cuda.is_available()):
        return None
    if mode == "interpret":
        # triton.jit picks the interpreter when the kernels are decorated, i.e. at import.
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        from . import triton_kernels
    except Exception:  # noqa: BLE001 - no triton, or a triton too old: use the twins
        return None
    return triton_kernels


def _use_triton(x: Tensor) -> ModuleType | None:
    if x.is_cuda or (x.device.type == "cpu" and triton_mode() == "interpret"):
        return _triton()
    return None


def device_context(device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """``torch.cuda.device(device)`` for a CUDA device, else a no-op: where Triton launches,
    CUDA graphs capture and streams are made. Building it does not initialise CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def rope_triton_ok(head_dim: int) -> bool:
    """The RoPE kernel holds half a head in `tl.arange(0, head_dim // 2)`: a power of two."""
    half = head_dim // 2
    return head_dim % 2 == 0 and half > 0 and half & (half - 1) == 0


# --- torch twins ------------------------------------------------------------------------------
def rms_norm_torch(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


def add_rms_norm_torch(x: Tensor, delta: Tensor, scale: float, weight: Tensor,
                       eps: float) -> tuple[Tensor, Tensor]:
    x = x + delta * scale
    return x, rms_norm_torch(x, weight, eps)


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rope_torch(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """q, k [B, H, T, D]; cos, sin [T, D] fp32. Computed in fp32, returned in the input dtype."""
    def rot(x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
    return rot(q), rot(k)


def swiglu_torch(gate: Tensor, up: Tensor) -> Tensor:
    return F.silu(gate) * up


def int8_matmul_torch(x: Tensor, w_int8: Tensor, scale: Tensor) -> Tensor:
    """w_int8 [out, in] int8, scale [out]: per-output-channel symmetric."""
    return F.linear(x, w_int8.to(x.dtype)) * scale.to(x.dtype)


def unpack_int4(packed: Tensor) -> Tensor:
    """[out, in/2] uint8 (low nibble = even column) → [out, in] uint8 in 0..15."""
    lo = packed & 0x0F
    hi = packed >> 4
    return torch.stack([lo, hi], dim=-1).reshape(packed.shape[0], -1)


def dequant_int4(packed: Tensor, scales: Tensor, zeros: Tensor, group: int,
                 dtype: torch.dtype) -> Tensor:
    """w = (q - zero) * scale per group of `group` input columns; scales/zeros
    [out, ceil(in/group)] (a last, partial group has its own scale and zero)."""
    q = unpack_int4(packed).to(dtype)
    out, n_in = q.shape
    groups = scales.shape[1]  # ceil(n_in / group): the last group may be partial
    q = F.pad(q, (0, groups * group - n_in)).view(out, groups, group)
    w = (q - zeros.to(dtype)[..., None]) * scales.to(dtype)[..., None]
    return w.view(out, groups * group)[:, :n_in]


def int4_matmul_torch(x: Tensor, packed: Tensor, scales: Tensor, zeros: Tensor,
                      group: int) -> Tensor:
    return F.linear(x, dequant_int4(packed, scales, zeros, group, x.dtype))


# --- dispatch ---------------------------------------------------------------------------------
def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    tk = _use_triton(x)
    if tk:
        return tk.rms_norm(x, weight, eps)
    return rms_norm_torch(x, weight, eps)


def add_rms_norm(x: Tensor, delta: Tensor, scale: float, weight: Tensor,
                 eps: float) -> tuple[Tensor, Tensor]:
    tk = _use_triton(x)
    if tk:
        return tk.add_rms_norm(x, delta, scale, weight, eps)
    return add_rms_norm_torch(x, delta, scale, weight, eps)


def rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    tk = _use_triton(q)
    if tk and rope_triton_ok(q.shape[-1]):
        return tk.rope(q, k, cos, sin)
    return rope_torch(q, k, cos, sin)


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    tk = _use_triton(gate)
    if tk:
        return tk.swiglu(gate, up)
    return swiglu_torch(gate, up)


GEMV_MAX_ROWS = 16  # the Triton GEMVs are for decode; prefill's big matmuls go through cuBLAS


def int8_matmul(x: Tensor, w_int8: Tensor, scale: Tensor) -> Tensor:
    tk = _use_triton(x)
    if tk and x.numel() // x.shape[-1] <= GEMV_MAX_ROWS:
        return tk.int8_matmul(x, w_int8, scale)
    return int8_matmul_torch(x, w_int8, scale)


def int4_matmul(x: Tensor, packed: Tensor, scales: Tensor, zeros: Tensor, group: int) -> Tensor:
    tk = _use_triton(x)
    if tk and x.numel() // x.shape[-1] <= GEMV_MAX_ROWS:
        return tk.int4_matmul(x, packed, scales, zeros, group)
    return int4_matmul_torch(x, packed, scales, zeros, group)
