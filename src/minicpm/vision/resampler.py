"""MiniCPM-V 2.0's perceiver resampler: 64 learned queries cross-attend to the vision features.

    kv   = ln_kv(kv_proj(features))                          # 1152 → LLM width (2304)
    q    = ln_q(query) + pos(8×8)                            # fixed 2-D sin-cos of the query grid
    k    = kv + pos(rows×cols)                               # 2-D sin-cos of the picture's grid
    out  = ln_post(MultiheadAttention(q, k, kv)) @ proj      # [64, LLM width]

The keys' position embedding is computed for every picture's own patch grid ("adaptive"), so
slices of any shape are placed correctly. Heads: LLM width // 128.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import Tensor, nn


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """[M] positions → [M, dim]: sin then cos, frequencies 1 / 10000^(2i/dim)."""
    omega = np.arange(dim // 2, dtype=np.float32)
    omega /= dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


@cache
def sincos_2d(dim: int, rows: int, cols: int) -> np.ndarray:
    """[rows·cols, dim], row-major. As published (MAE's recipe): the grid comes from
    meshgrid(w, h), so the first half of the channels encodes the column index and the second
    half the row index."""
    grid_w, grid_h = np.meshgrid(np.arange(cols, dtype=np.float32),
                                 np.arange(rows, dtype=np.float32))
    return np.concatenate([sincos_1d(dim // 2, grid_w), sincos_1d(dim // 2, grid_h)], axis=1)


class Resampler(nn.Module):
    def __init__(self, num_queries: int, embed_dim: int, num_heads: int, kv_dim: int,
                 eps: float = 1e-6):
        super().__init__()
        grid = math.isqrt(num_queries)
        if grid * grid != num_queries:
            raise ValueError(f"num_queries must be a square, got {num_queries}")
        self.num_queries = num_queries
        self.embed_dim = embed_dim
        # Stored in the checkpoint as a (frozen) parameter; recomputed here so old files match.
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(embed_dim, grid, grid)).float(),
                                      requires_grad=False)
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj: nn.Module = (nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim != embed_dim
                                   else nn.Identity())
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_post = nn.LayerNorm(embed_dim, eps=eps)
        self.proj = nn.Parameter(torch.zeros(embed_dim, embed_dim))

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """x [B, rows·cols, kv_dim] for one picture size → [B, num_queries, embed_dim]."""
        pos = torch.from_numpy(sincos_2d(self.embed_dim, int(grid[0]), int(grid[1])))
        pos = pos.to(device=x.device, dtype=x.dtype)
        kv = self.ln_kv(self.kv_proj(x)).transpose(0, 1)  # [L, B, D]: MHA is sequence-first
        q = (self.ln_q(self.query) + self.pos_embed).unsqueeze(1).expand(-1, x.shape[0], -1)
        out = self.attn(q, kv + pos.unsqueeze(1), kv, need_weights=False)[0]
        return self.ln_post(out.transpose(0, 1)) @ self.proj
