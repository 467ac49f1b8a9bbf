"""A plain numpy float64 forward pass of MiniCPM, written from the formulas (not from any
engine in this package), to check llama.cpp and the torch engine against.

    x      = embed[tokens] * scale_emb
    x      = x + attn(rmsnorm(x)) * scale_depth / sqrt(L)      (every layer)
    x      = x + mlp(rmsnorm(x))  * scale_depth / sqrt(L)      (SwiGLU, or top-k MoE)
    logits = lm_head(rmsnorm(x) / (hidden_size / dim_model_base))

Attention is causal, multi-head or grouped-query, with rotate-half RoPE in Hugging Face's row
layout. MoE routing is MiniCPM-MoE's: softmax over all experts, keep the top k, renormalise the
kept weights to sum to 1. A llama-format config makes all three scalars neutral. Dynamic-NTK
rope (MiniCPM-2B-128k) recomputes the base from the sequence length once it exceeds
max_position_embeddings, as HF's MiniCPMDynamicNTKScalingRotaryEmbedding does; the reference
has no KV cache, so every position uses the base of the whole sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .tiny import TinyConfig, expert_names


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(z: np.ndarray) -> np.ndarray:
    return z / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rope_base(cfg: TinyConfig, seq_len: int) -> float:
    """The rope base for a sequence of ``seq_len`` tokens (dynamic NTK grows it past
    max_position_embeddings; otherwise it is rope_theta)."""
    rs = cfg.rope_scaling
    base = float(cfg.rope_theta)
    if rs and rs.get("type", rs.get("rope_type")) == "dynamic" \
            and seq_len > cfg.max_position_embeddings:
        f, d = float(rs["factor"]), cfg.head_dim
        base *= (f * seq_len / cfg.max_position_embeddings - (f - 1)) ** (d / (d - 2))
    return base


def apply_rope(v: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotate-half RoPE on [heads, T, d]: the first and second halves of each head pair up."""
    d = v.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = positions[:, None].astype(np.float64) * inv[None, :]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-v[..., d // 2:], v[..., :d // 2]], -1)
    return v * cos + rot * sin


def _mlp(m: np.ndarray, gate: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    return (silu(m @ gate.T) * (m @ up.T)) @ down.T


def _moe(cfg: TinyConfig, W: dict[str, np.ndarray], layer: int, m: np.ndarray) -> np.ndarray:
    probs = softmax(m @ W[f"model.layers.{layer}.mlp.gate.weight"].T)  # [T, E]
    out = np.zeros_like(m)
    k = cfg.num_experts_per_tok
    for t in range(m.shape[0]):
        top = np.argsort(-probs[t], kind="stable")[:k]
        weights = probs[t, top] / probs[t, top].sum()
        for e, we in zip(top, weights, strict=True):
            n = expert_names(layer, int(e))
            out[t] += we * _mlp(m[t:t + 1], W[n["gate"]], W[n["up"]], W[n["down"]])[0]
    return out


def forward(cfg: TinyConfig, weights: dict[str, np.ndarray],
            tokens: Sequence[int]) -> np.ndarray:
    """Logits [T, vocab] in float64 for every position of ``tokens`` (no cache)."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    T = len(tokens)
    if T == 0:
        raise ValueError("no tokens")
    L, d = cfg.num_hidden_layers, cfg.head_dim
    nh, nkv, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.rms_norm_eps
    res = cfg.residual_scale
    x = W["model.embed_tokens.weight"][np.asarray(tokens)] * cfg.embedding_scale
    pos = np.arange(T)
    base = rope_base(cfg, T)
    causal = np.tril(np.ones((T, T), dtype=bool))
    for layer in range(L):
        p = f"model.layers.{layer}."
        a = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (a @ W[p + "self_attn.q_proj.weight"].T).reshape(T, nh, d).transpose(1, 0, 2)
        k = (a @ W[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        v = (a @ W[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, d).transpose(1, 0, 2)
        q, k = apply_rope(q, pos, base), apply_rope(k, pos, base)
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)  # GQA: head j uses kv j//g
        s = np.where(causal, q @ k.transpose(0, 2, 1) / math.sqrt(d), -np.inf)
        o = (softmax(s) @ v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + (o @ W[p + "self_attn.o_proj.weight"].T) * res
        m = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        if cfg.num_experts:
            y = _moe(cfg, W, layer, m)
        else:
            y = _mlp(m, W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"],
                     W[p + "mlp.down_proj.weight"])
        x = x + y * res
    x = rms_norm(x, W["model.norm.weight"], eps) / cfg.logit_scale
    head = W["lm_head.weight"] if "lm_head.weight" in W and not cfg.tie_word_embeddings \
        else W["model.embed_tokens.weight"]
    return x @ head.T


def greedy(cfg: TinyConfig, weights: dict[str, np.ndarray], prompt_ids: Sequence[int],
           n: int, eos_id: int | None = None) -> list[int]:
    """The ``n`` tokens greedy decoding appends to ``prompt_ids`` (fewer if ``eos_id`` comes;
    the EOS itself is not returned). Recomputes the whole sequence per step: slow but simple."""
    ids = list(prompt_ids)
    out: list[int] = []
    for _ in range(n):
        nxt = int(np.argmax(forward(cfg, weights, ids)[-1]))
        if eos_id is not None and nxt == eos_id:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ over all elements (b is the reference)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))
