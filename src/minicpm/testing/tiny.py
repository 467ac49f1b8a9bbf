"""Tiny random MiniCPM models for tests: config presets, weights in Hugging Face naming, and
Hugging Face-layout folders (config.json, safetensors, tokenizer.json) written at test time.
The tokenizer lives in ``tiny_tokenizer``, the file format in ``safetensors_writer``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .safetensors_writer import save_safetensors
from .tiny_tokenizer import MINICPM_CHAT_TEMPLATE as MINICPM_CHAT_TEMPLATE  # gguf_writer's
from .tiny_tokenizer import TinyVocab, build_tokenizer_json, tiny_vocab, tokenizer_config

# --- configs -------------------------------------------------------------------------------------

#: MiniCPM-1/2's published μP constants (2B, 1B, 2B-128k and MoE-8x2B all use them).
PUBLISHED_SCALE_EMB = 12.0
PUBLISHED_SCALE_DEPTH = 1.4
PUBLISHED_DIM_MODEL_BASE = 256

@dataclass
class TinyConfig:
    """The hyper-parameters of a MiniCPM (or its llama-format) model, named as config.json names
    them. Defaults are small enough for a forward pass in milliseconds, and keep every matrix
    row a multiple of 32 so Q8_0 / Q4_0 GGUF files can be written too."""

    vocab_size: int = 512
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    scale_emb: float = PUBLISHED_SCALE_EMB
    scale_depth: float = PUBLISHED_SCALE_DEPTH
    # 16 rather than 256: logit_scale = hidden/dim_model_base = 4, so a missing or inverted
    # logit scale (1/4) changes logits 16-fold and cannot go unnoticed.
    dim_model_base: int = 16
    tie_word_embeddings: bool = True
    num_experts: int = 0  # 0 = dense MLP
    num_experts_per_tok: int = 2
    rope_scaling: dict[str, Any] | None = None  # None or {"type": "dynamic", "factor": 4.0}
    architecture: str = "minicpm"  # "minicpm" | "llama" (MiniCPM's llama-format)
    bos_token_id: int = 1
    eos_token_id: int = 2
    extra: dict[str, Any] = field(default_factory=dict)  # more config.json fields

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_minicpm(self) -> bool:
        return self.architecture == "minicpm"

    @property
    def embedding_scale(self) -> float:
        return float(self.scale_emb) if self.is_minicpm else 1.0

    @property
    def residual_scale(self) -> float:
        """What each residual branch is multiplied by: scale_depth / sqrt(L)."""
        return self.scale_depth / math.sqrt(self.num_hidden_layers) if self.is_minicpm else 1.0

    @property
    def logit_scale(self) -> float:
        """What the final hidden state is divided by before lm_head: hidden / dim_model_base."""
        return self.hidden_size / self.dim_model_base if self.is_minicpm else 1.0

    def replace(self, **changes: Any) -> TinyConfig:
        return dataclasses.replace(self, **changes)

    # --- presets ------------------------------------------------------------------------------
    @classmethod
    def dense_tied(cls, **kw: Any) -> TinyConfig:
        """Like MiniCPM-2B: multi-head attention, lm_head tied to the embeddings."""
        return cls(**kw)

    @classmethod
    def gqa(cls, **kw: Any) -> TinyConfig:
        """Like MiniCPM-1B: grouped-query attention (here 4 query heads share 2 KV heads)."""
        return cls(**{"num_key_value_heads": 2, **kw})

    @classmethod
    def untied(cls, **kw: Any) -> TinyConfig:
        """A separate lm_head (GGUF `output.weight`), as MiniCPM-2B-128k has."""
        return cls(**{"tie_word_embeddings": False, **kw})

    @classmethod
    def moe(cls, **kw: Any) -> TinyConfig:
        """Like MiniCPM-MoE-8x2B: 8 SwiGLU experts per layer, top-2 routing."""
        return cls(**{"num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 64, **kw})

    @classmethod
    def rope128k(cls, **kw: Any) -> TinyConfig:
        """Like MiniCPM-2B-128k: dynamic-NTK rope ×4, untied. max_position_embeddings is small so
        that the dynamic base kicks in within a short test sequence."""
        return cls(**{"rope_scaling": {"type": "dynamic", "factor": 4.0},
                      "max_position_embeddings": 16, "tie_word_embeddings": False, **kw})

    @classmethod
    def llama_format(cls, **kw: Any) -> TinyConfig:
        """MiniCPM's llama-format: the μP scalars are folded into the weights (see
        ``to_llama_format``), so the architecture is a plain untied Llama."""
        return cls(**{"architecture": "llama", "tie_word_embeddings": False, **kw})

    # --- config.json --------------------------------------------------------------------------
    def to_hf_config(self) -> dict[str, Any]:
        c: dict[str, Any] = {
            "architectures": ["MiniCPMForCausalLM" if self.is_minicpm else "LlamaForCausalLM"],
            "model_type": "minicpm" if self.is_minicpm else "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "hidden_act": "silu",
            "initializer_range": 0.1,
            "attention_bias": False,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
            "use_cache": True,
        }
        if self.is_minicpm:
            c.update(scale_emb=self.scale_emb, scale_depth=self.scale_depth,
                     dim_model_base=self.dim_model_base)
            if self.num_experts:
                c.update(num_experts=self.num_experts, num_experts_per_tok=self.num_experts_per_tok)
        c.update(self.extra)
        return c


PRESETS = {
    "dense_tied": TinyConfig.dense_tied,
    "gqa": TinyConfig.gqa,
    "untied": TinyConfig.untied,
    "moe": TinyConfig.moe,
    "rope128k": TinyConfig.rope128k,
    "llama_format": TinyConfig.llama_format,
}


def preset(name: str, **kw: Any) -> TinyConfig:
    try:
        return PRESETS[name](**kw)
    except KeyError:
        raise ValueError(f"unknown tiny preset {name!r}; one of {', '.join(PRESETS)}") from None


# --- weights -------------------------------------------------------------------------------------

def expert_names(layer: int, expert: int) -> dict[str, str]:
    """MiniCPM-MoE's per-expert names (Mixtral convention: w1 = gate, w3 = up, w2 = down), as
    its modeling_minicpm.py and vLLM's loader spell them."""
    p = f"model.layers.{layer}.mlp.experts.{expert}."
    return {"gate": p + "w1.weight", "up": p + "w3.weight", "down": p + "w2.weight"}


def random_weights(cfg: TinyConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 weights in Hugging Face MiniCPM naming, reproducible from ``seed``.

    Scales keep activations O(1) so that the numerics mean something: projections are
    N(0, gain²/fan_in), norms 1 ± 0.1, embeddings N(0, 0.1²) (×scale_emb 12: a residual stream
    of rms ≈ 1.2), and the branch outputs (o_proj, down) have gain 3 so attention and MLP move
    the stream more than the token's own embedding does. Otherwise a tied model just repeats
    its last token under greedy decoding, and greedy tests would test nothing. An untied
    lm_head is N(0, 1/4): logits spread over a unit or so, far from float32 near-ties."""
    rng = np.random.default_rng(seed)
    h, i, v, d = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads

    def lin(out_f: int, in_f: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((out_f, in_f)) * gain / math.sqrt(in_f)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32)

    emb_std = 0.1 if cfg.is_minicpm else 0.1 * PUBLISHED_SCALE_EMB
    w: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": (rng.standard_normal((v, h)) * emb_std).astype(np.float32)}
    for layer in range(cfg.num_hidden_layers):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = lin(nh * d, h)
        w[p + "self_attn.k_proj.weight"] = lin(nkv * d, h)
        w[p + "self_attn.v_proj.weight"] = lin(nkv * d, h)
        w[p + "self_attn.o_proj.weight"] = lin(h, nh * d, gain=3.0)
        w[p + "post_attention_layernorm.weight"] = norm()
        if cfg.num_experts:
            w[p + "mlp.gate.weight"] = lin(cfg.num_experts, h, gain=2.0)  # the router
            for e in range(cfg.num_experts):
                n = expert_names(layer, e)
                w[n["gate"]] = lin(i, h)
                w[n["up"]] = lin(i, h)
                w[n["down"]] = lin(h, i, gain=3.0)
        else:
            w[p + "mlp.gate_proj.weight"] = lin(i, h)
            w[p + "mlp.up_proj.weight"] = lin(i, h)
            w[p + "mlp.down_proj.weight"] = lin(h, i, gain=3.0)
    w["model.norm.weight"] = norm()
    if not cfg.tie_word_embeddings:
        w["lm_head.weight"] = (rng.standard_normal((v, h)) * 0.5).astype(np.float32)
    return w


def to_llama_format(cfg: TinyConfig, weights: dict[str, np.ndarray]
                    ) -> tuple[TinyConfig, dict[str, np.ndarray]]:
    """Fold the μP scalars into the weights, as MiniCPM's llama-format release does: the
    embeddings ×scale_emb, every o_proj / down projection ×scale_depth/√L, and an untied lm_head
    ÷(hidden/dim_model_base). The result computes the same logits as a plain Llama."""
    if not cfg.is_minicpm:
        raise ValueError("already llama-format")
    out = {k: v.astype(np.float32, copy=True) for k, v in weights.items()}
    head = weights.get("lm_head.weight", weights["model.embed_tokens.weight"])
    out["lm_head.weight"] = (head / cfg.logit_scale).astype(np.float32)
    out["model.embed_tokens.weight"] *= np.float32(cfg.embedding_scale)
    r = np.float32(cfg.residual_scale)
    for k in out:
        if k.endswith(("o_proj.weight", "down_proj.weight", ".w2.weight")):
            out[k] *= r
    return cfg.replace(architecture="llama", tie_word_embeddings=False), out


# --- folders -------------------------------------------------------------------------------------

def write_hf_folder(cfg: TinyConfig, weights: dict[str, np.ndarray], path: str | Path,
                    dtype: str = "float32", shards: int = 1,
                    vocab: TinyVocab | None = None) -> Path:
    """A Hugging Face-layout model folder: config.json, model.safetensors (or ``shards`` files
    with model.safetensors.index.json), tokenizer.json, tokenizer_config.json,
    generation_config.json. ``dtype`` is "float32" or "bfloat16"."""

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocab or tiny_vocab(cfg.vocab_size)
    if len(vocab) != cfg.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} pieces, config says {cfg.vocab_size}")
    hf = cfg.to_hf_config()
    hf["torch_dtype"] = dtype
    (folder / "config.json").write_text(json.dumps(hf, indent=2), "utf-8")
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}), "utf-8")
    (folder / "tokenizer.json").write_text(
        json.dumps(build_tokenizer_json(vocab), ensure_ascii=False), "utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(vocab), ensure_ascii=False, indent=2), "utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}), "utf-8")

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    if shards <= 1:
        save_safetensors(weights, folder / "model.safetensors", dtype)
        return folder
    names = list(weights)
    per = math.ceil(len(names) / shards)
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: weights[k] for k in names[s * per:(s + 1) * per]}
        total += save_safetensors(part, folder / fname, dtype)
        weight_map.update(dict.fromkeys(part, fname))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2), "utf-8")
    return folder
