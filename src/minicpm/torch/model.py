"""MiniCPM in one readable file (gpt-fast style): the forward pass reads like the maths.

    x      = embed(tokens) * scale_emb
    x      = x + attn(norm(x)) * scale_depth / sqrt(L)        (every layer)
    x      = x + mlp(norm(x))  * scale_depth / sqrt(L)        (mlp is SwiGLU, or top-k MoE)
    logits = lm_head(norm(x) / (hidden_size / dim_model_base))

Llama-format checkpoints are the same graph with every scalar neutral (1, 1, 1). Speed is added
from outside: `kernels` swaps in fused ops on CUDA, `quantize` swaps Linear layers for int8/int4
ones, `generate` captures the decode step as a CUDA graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"type": "dynamic", "factor": 4.0}
    scale_emb: float = 1.0
    scale_depth: float | None = None  # None: neutral residual (llama)
    dim_model_base: float | None = None  # None: neutral logits (llama)
    tie_word_embeddings: bool = True
    num_experts: int = 0
    num_experts_per_tok: int = 2
    architecture: str = "minicpm"  # "minicpm" | "llama"
    bos_token_id: int | None = 1
    eos_token_id: list[int] = field(default_factory=lambda: [2])

    @property
    def residual_scale(self) -> float:
        return 1.0 if self.scale_depth is None else self.scale_depth / math.sqrt(self.num_layers)

    @property
    def logit_scale(self) -> float:
        """What the final hidden state is divided by before lm_head."""
        return 1.0 if not self.dim_model_base else self.hidden_size / self.dim_model_base

    def num_parameters(self) -> int:
        h, i, e = self.hidden_size, self.intermediate_size, max(self.num_experts, 1)
        attn = h * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        mlp = 3 * h * i * e + (h * self.num_experts if self.num_experts else 0)
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.vocab_size * h + head + self.num_layers * (attn + mlp + 2 * h) + h


# --- rotary embedding -------------------------------------------------------------------------
def rope_inv_freq(cfg: ModelConfig, seq_len: Tensor, device: torch.device) -> Tensor:
    """Inverse frequencies in fp32. Dynamic NTK (MiniCPM-2B-128k, as HF's
    DynamicNTKScalingRotaryEmbedding): past max_position_embeddings the base grows with the
    current sequence length L: base * (factor * L / max_pos - (factor - 1)) ** (d / (d - 2)).
    ``seq_len`` is a 0-d tensor so that the decode step needs no host value (CUDA graphs), and
    rope_theta stays a Python scalar: ``torch.tensor(theta, device=...)`` here would be a
    host-to-device copy inside the captured decode step, which fails the capture."""
    d = cfg.head_dim
    exponents = torch.arange(0, d, 2, device=device, dtype=torch.float32) / d
    if not cfg.rope_scaling:
        return 1.0 / torch.pow(cfg.rope_theta, exponents)
    factor, max_pos = cfg.rope_scaling["factor"], cfg.max_position_embeddings
    growth = (factor * seq_len.float() / max_pos - (factor - 1)) ** (d / (d - 2))
    base = cfg.rope_theta * torch.where(seq_len > max_pos, growth, 1.0)
    return 1.0 / base ** exponents


def rope_cos_sin(cfg: ModelConfig, positions: Tensor, seq_len: Tensor) -> tuple[Tensor, Tensor]:
    """cos, sin of shape [T, head_dim] (rotate-half layout: the half-table repeated twice)."""
    freqs = positions.float()[:, None] * rope_inv_freq(cfg, seq_len, positions.device)[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


# --- layers -----------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return kernels.rms_norm(x, self.weight, self.eps)

    def add_then_norm(self, x: Tensor, delta: Tensor | None,
                      scale: float) -> tuple[Tensor, Tensor]:
        """(x + delta * scale, this norm of it) in one fused kernel: the residual add and the
        norm that reads its result share one pass over x. ``delta`` None: nothing to add."""
        if delta is None:
            return x, self(x)
        return kernels.add_rms_norm(x, delta, scale, self.weight, self.eps)


class KVCache(nn.Module):
    """Static cache [batch, kv_heads, max_len, head_dim]; written in place at input_pos."""

    def __init__(self, batch: int, max_len: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        super().__init__()
        shape = (batch, kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k.index_copy_(2, input_pos, k)
        self.v.index_copy_(2, input_pos, v)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * d, h, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, input_pos: Tensor,
                kv_len: int | None, static_shapes: bool) -> Tensor:
        b, t, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(b, t, cfg.num_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = kernels.rope(q, k, cos, sin)
        if self.kv_cache is None:  # no cache: plain causal attention over this chunk
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=True)
        else:
            k_all, v_all = self.kv_cache.update(input_pos, k, v)
            # Eager runs attend over the kv_len positions written (a host int); the CUDA-graph
            # step keeps static shapes, the whole cache, and the mask alone hides the unwritten
            # tail (no host value may enter a captured step).
            if static_shapes:
                n = k_all.shape[2]
            elif kv_len is not None:
                n = kv_len
            else:
                raise ValueError("with a KV cache, pass kv_len (eager) or static_shapes=True")
            k_all, v_all = k_all[:, :, :n], v_all[:, :, :n]
            mask = torch.arange(n, device=x.device)[None, :] <= input_pos[:, None]
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, cfg.num_heads * cfg.head_dim))


class MLP(nn.Module):
    def __init__(self, hidden: int, inter: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(kernels.swiglu(self.gate_proj(x), self.up_proj(x)))


# MoE paths: with at most this many tokens (decode, a short draft), gather each token's chosen
# experts: no host sync (CUDA-graph safe). It copies tokens × top_k expert matrices; the prefill
# path loops over the experts, reading each once but needing a host sync (nonzero). 4 is
# MiniCPM-MoE-8x2B's 8 experts / top-2: up to here the gather reads no more than the loop.
MOE_GATHER_MAX_TOKENS = 4


class MoE(nn.Module):
    """MiniCPM-MoE: router logits → top-k → softmax over the k chosen (the same as a softmax over
    all experts renormalised over the top-k) → weighted sum of SwiGLU experts.
    Expert weights are stacked [E, out, in] so that decode can gather the chosen two without a
    host sync (CUDA-graph safe); prefill loops over experts, which reads each once."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e, h, i = cfg.num_experts, cfg.hidden_size, cfg.intermediate_size
        self.top_k = cfg.num_experts_per_tok
        self.gate = nn.Linear(h, e, bias=False)
        self.w_gate = nn.Parameter(torch.empty(e, i, h))
        self.w_up = nn.Parameter(torch.empty(e, i, h))
        self.w_down = nn.Parameter(torch.empty(e, h, i))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, idx = torch.topk(self.gate(x).float(), self.top_k, dim=-1)
        weights = weights.softmax(dim=-1).to(x.dtype)  # [T, k]
        if x.shape[0] <= MOE_GATHER_MAX_TOKENS:  # decode: gather the chosen experts' weights
            g = torch.einsum("th,tkih->tki", x, self.w_gate[idx])
            u = torch.einsum("th,tkih->tki", x, self.w_up[idx])
            y = torch.einsum("tki,tkhi->tkh", kernels.swiglu(g, u), self.w_down[idx])
            out = (y * weights[..., None]).sum(dim=1)
        else:
            out = torch.zeros_like(x)
            for e in range(self.w_gate.shape[0]):
                tok, slot = torch.nonzero(idx == e, as_tuple=True)
                if tok.numel() == 0:
                    continue
                xe = x[tok]
                ye = kernels.swiglu(xe @ self.w_gate[e].T, xe @ self.w_up[e].T) @ self.w_down[e].T
                out.index_add_(0, tok, ye * weights[tok, slot, None])
        return out.reshape(shape)


class Block(nn.Module):
    """One decoder layer on the residual stream x (s = residual_scale, the same in every layer):

        x = x + attn(input_layernorm(x)) * s
        x = x + mlp(post_attention_layernorm(x)) * s

    Each add is fused with the norm that reads its result (RMSNorm.add_then_norm). For the
    last add that norm is the next layer's, so a block returns its MLP output unadded: the next
    block (or the final norm) adds it in the same kernel as its own norm. ``delta`` is that
    unadded output of the block before (None in the first block)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.residual_scale = cfg.residual_scale
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp: nn.Module = MoE(cfg) if cfg.num_experts else MLP(cfg.hidden_size,
                                                                    cfg.intermediate_size)

    def forward(self, x: Tensor, delta: Tensor | None, rope: tuple[Tensor, Tensor],
                input_pos: Tensor, kv_len: int | None,
                static_shapes: bool) -> tuple[Tensor, Tensor]:
        s = self.residual_scale
        x, h = self.input_layernorm.add_then_norm(x, delta, s)  # x += delta·s; h = norm(x)
        a = self.self_attn(h, *rope, input_pos, kv_len, static_shapes)
        x, h = self.post_attention_layernorm.add_then_norm(x, a, s)  # x += attn·s; h = norm(x)
        return x, self.mlp(h)  # added by the next block, fused with its norm


class MiniCPM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(
            cfg.hidden_size, cfg.vocab_size, bias=False)
        self.max_seq_len = 0

    def setup_caches(self, max_seq_len: int, batch: int = 1,
                     dtype: torch.dtype | None = None) -> None:
        """Allocate the static KV cache (replaces any previous one)."""
        p = self.embed_tokens.weight
        for layer in self.layers:
            layer.self_attn.kv_cache = KVCache(batch, max_seq_len, self.cfg.num_kv_heads,
                                               self.cfg.head_dim, dtype or p.dtype, p.device)
        self.max_seq_len = max_seq_len

    def embed(self, tokens: Tensor) -> Tensor:
        """Token ids [B, T] → input embeddings [B, T, H], μP scale applied. Vision models build
        their own input_embeds from this (image features spliced in) and call forward()."""
        return self.embed_tokens(tokens) * self.cfg.scale_emb

    def forward(self, tokens: Tensor | None = None, input_pos: Tensor | None = None, *,
                input_embeds: Tensor | None = None, kv_len: int | None = None,
                static_shapes: bool = False, last_only: bool = False) -> Tensor:
        """Logits (fp32) for tokens [B, T] (or input_embeds [B, T, H]) at positions input_pos [T].

        With a cache set up, K/V are written at input_pos and attention reads either the first
        kv_len positions (a host int: eager runs) or, with static_shapes, the whole static cache
        behind a mask (the CUDA-graph decode step, where no host value may enter).
        last_only: logits of the last position only (prefill)."""
        x = self.embed(tokens) if input_embeds is None else input_embeds
        if input_pos is None:
            input_pos = torch.arange(x.shape[1], device=x.device)
        # The sequence length that drives dynamic NTK: the last position written + 1.
        rope = rope_cos_sin(self.cfg, input_pos, input_pos[-1] + 1)
        delta = None
        for layer in self.layers:
            x, delta = layer(x, delta, rope, input_pos, kv_len, static_shapes)
        _, h = self.norm.add_then_norm(x, delta, self.cfg.residual_scale)
        if last_only:
            h = h[:, -1:]
        h = h / self.cfg.logit_scale
        logits = F.linear(h, self.embed_tokens.weight) if self.lm_head is None else self.lm_head(h)
        return logits.float()
