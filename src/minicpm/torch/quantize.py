"""Weight-only quantization at load time, swapped in from outside the model (gpt-fast style).

- int8: symmetric per output channel, w ≈ q * s, q in [-127, 127]. Error per weight ≤ s/2 =
  max|w_row| / 254.
- int4: asymmetric per group of `group` input columns (default 128), w ≈ (q - z) * s with
  q in 0..15, s = (max - min) / 15, z = round(-min / s). Error per weight ≤ s/2 + rounding of z
  (≤ s in all), i.e. about (max - min) / 15 of its group.

Also reads GPTQ (AutoGPTQ) int4 tensors, the format of MiniCPM-2B-sft/dpo-int4 on the hub.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import kernels
from .model import MoE

QUANT_MODES = ("int8", "int4")
DEFAULT_GROUP = 128


def quantize_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    wf = w.float()
    scale = wf.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(wf / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def quantize_int4(w: Tensor, group: int = DEFAULT_GROUP) -> tuple[Tensor, Tensor, Tensor]:
    """→ packed [out, in/2] uint8, scales [out, ceil(in/group)] fp32, zeros (same shape) fp32.
    A last, partial group is quantized on its own columns: the zero padding that fills it does
    not move its min/max (both are clamped to include 0 anyway)."""
    out, n_in = w.shape
    if n_in % 2 or group % 2:
        raise ValueError(f"int4 needs even in_features ({n_in}) and group size ({group})")
    groups = -(-n_in // group)
    wf = torch.nn.functional.pad(w.float(), (0, groups * group - n_in)).view(out, groups, group)
    lo = wf.amin(dim=-1).clamp(max=0.0)
    hi = wf.amax(dim=-1).clamp(min=0.0)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8)
    zero = torch.round(-lo / scale).clamp(0, 15)
    q = torch.round(wf / scale[..., None] + zero[..., None]).clamp(0, 15).to(torch.uint8)
    return pack_int4(q.view(out, groups * group)[:, :n_in]), scale, zero


def pack_int4(q: Tensor) -> Tensor:
    """[out, in] values 0..15 → [out, in/2] uint8, even column in the low nibble."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


class Int8Linear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        q, s = quantize_int8(linear.weight.data)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", q)
        self.register_buffer("scale", s.to(linear.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return kernels.int8_matmul(x, self.weight, self.scale)


class Int4Linear(nn.Module):
    def __init__(self, packed: Tensor, scales: Tensor, zeros: Tensor, group: int,
                 dtype: torch.dtype):
        super().__init__()
        self.out_features, self.in_features = packed.shape[0], packed.shape[1] * 2
        self.group = group
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales.to(dtype))
        self.register_buffer("zeros", zeros.to(dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, group: int = DEFAULT_GROUP) -> Int4Linear:
        p, s, z = quantize_int4(linear.weight.data, group)
        return cls(p, s, z, group, linear.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return kernels.int4_matmul(x, self.packed, self.scales, self.zeros, self.group)


def quantize_model(model: nn.Module, mode: str, group: int = DEFAULT_GROUP) -> int:
    """Swap every nn.Linear except the MoE router for its int8/int4 twin. The tied embedding
    stays dense (it is also the lookup table); stacked MoE experts stay dense too.
    Returns how many layers were swapped."""
    if mode not in QUANT_MODES:
        raise ValueError(f"quant must be one of {QUANT_MODES}, got {mode!r}")
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            is_router = name == "gate" and isinstance(parent, MoE)
            if not isinstance(child, nn.Linear) or is_router:
                continue
            if mode == "int4" and child.in_features % group:
                continue  # odd shapes (tiny test models) stay dense
            new = Int8Linear(child) if mode == "int8" else Int4Linear.from_linear(child, group)
            setattr(parent, name, new)
            swapped += 1
    return swapped


# --- GPTQ checkpoints -------------------------------------------------------------------------
def gptq_dequantize(qweight: Tensor, qzeros: Tensor, scales: Tensor, g_idx: Tensor | None,
                    bits: int = 4, zero_offset: int = 1) -> Tensor:
    """AutoGPTQ layout → dense W [out, in] (fp32).

    qweight int32 [in*bits/32, out] (8 nibbles per int32 along `in`, low bits first),
    qzeros int32 [groups, out*bits/32], scales [groups, out], g_idx [in] (group of each input
    row). AutoGPTQ's v1 format stores zero - 1, hence zero_offset=1."""
    if bits != 4:
        raise ValueError(f"only 4-bit GPTQ is supported, got {bits}")
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=qweight.device)
    q = (qweight[:, None, :] >> shifts[None, :, None]) & 0xF  # [in/8, 8, out]
    q = q.reshape(-1, qweight.shape[1])  # [in, out]
    z = (qzeros[:, :, None] >> shifts[None, None, :]) & 0xF  # [groups, out/8, 8]
    z = z.reshape(qzeros.shape[0], -1) + zero_offset  # [groups, out]
    n_in = q.shape[0]
    if g_idx is None:
        g_idx = torch.arange(n_in, device=q.device) // (n_in // scales.shape[0])
    g = g_idx.long()
    w = (q.float() - z[g].float()) * scales[g].float()  # [in, out]
    return w.T.contiguous()


def linear_from_dense(w: Tensor, dtype: torch.dtype) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
    lin.weight = nn.Parameter(w.to(dtype), requires_grad=False)
    return lin
