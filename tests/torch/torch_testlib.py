"""Tiny random MiniCPM folders and an independent float64 numpy reference (from the formulas in
DESIGN.md, not from src/minicpm/torch). A plain module with a unique name, so that test files
import it wherever pytest collects them from (``from conftest import`` picks whichever conftest
was imported first)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minicpm.testing import reference  # noqa: E402
from minicpm.testing.tiny import TinyConfig  # noqa: E402

BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
            rms_norm_eps=1e-5, rope_theta=10000.0, scale_emb=12.0, scale_depth=1.4,
            dim_model_base=16, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
            architectures=["MiniCPMForCausalLM"], model_type="minicpm")

CONFIGS: dict[str, dict[str, Any]] = {
    "dense": {},
    "gqa": dict(num_key_value_heads=2),
    "untied": dict(tie_word_embeddings=False),
    "moe": dict(num_experts=4, num_experts_per_tok=2),
    "rope128k": dict(rope_scaling={"type": "dynamic", "factor": 4.0}, max_position_embeddings=8,
                     tie_word_embeddings=False),
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", scale_emb=None,
                  scale_depth=None, dim_model_base=None, tie_word_embeddings=False),
}


def make_config(name: str = "dense", **kw: Any) -> dict[str, Any]:
    cfg = {**BASE, **CONFIGS[name], **kw}
    return {k: v for k, v in cfg.items() if v is not None}


def random_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 weights."""
    rng = np.random.default_rng(seed)
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // nh

    def w(*shape: int, s: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * s).astype(np.float32)

    out = {"model.embed_tokens.weight": w(v, h, s=0.5),
           "model.norm.weight": 1 + w(h, s=0.1)}
    if not cfg.get("tie_word_embeddings", True):
        out["lm_head.weight"] = w(v, h, s=0.3)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        out[p + "input_layernorm.weight"] = 1 + w(h, s=0.1)
        out[p + "post_attention_layernorm.weight"] = 1 + w(h, s=0.1)
        out[p + "self_attn.q_proj.weight"] = w(nh * d, h)
        out[p + "self_attn.k_proj.weight"] = w(nkv * d, h)
        out[p + "self_attn.v_proj.weight"] = w(nkv * d, h)
        out[p + "self_attn.o_proj.weight"] = w(h, nh * d)
        if cfg.get("num_experts"):
            out[p + "mlp.gate.weight"] = w(cfg["num_experts"], h, s=0.3)
            for e in range(cfg["num_experts"]):
                q = f"{p}mlp.experts.{e}."
                out[q + "gate_proj.weight"] = w(i, h)
                out[q + "up_proj.weight"] = w(i, h)
                out[q + "down_proj.weight"] = w(h, i)
        else:
            out[p + "mlp.gate_proj.weight"] = w(i, h)
            out[p + "mlp.up_proj.weight"] = w(i, h)
            out[p + "mlp.down_proj.weight"] = w(h, i)
    return out


# --- float64 reference --------------------------------------------------------------------------
def reference_logits(cfg: dict[str, Any], wts: dict[str, np.ndarray],
                     tokens: list[int]) -> np.ndarray:
    """Logits [T, V] in float64 for a whole sequence (no cache), from the package's reference
    forward (minicpm.testing.reference, written from the formulas, not from the torch engine)."""
    known = {f.name for f in dataclasses.fields(TinyConfig)} - {"architecture", "extra"}
    tiny = TinyConfig(**{k: v for k, v in cfg.items() if k in known},
                      architecture="minicpm" if "minicpm" in cfg.get("model_type", "") else "llama")
    return reference.forward(tiny, _mixtral_expert_names(wts), tokens)


def _mixtral_expert_names(wts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """These folders name experts gate_proj/up_proj/down_proj (the loader takes both); the
    reference reads MiniCPM-MoE's w1/w3/w2."""
    rename = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}
    out = {}
    for k, v in wts.items():
        m = re.match(r"^(model\.layers\.\d+\.mlp\.experts\.\d+\.)(\w+)(\.weight)$", k)
        out[m[1] + rename.get(m[2], m[2]) + m[3] if m else k] = v
    return out


# --- folders ------------------------------------------------------------------------------------
def write_folder(folder: Path, cfg: dict[str, Any], wts: dict[str, np.ndarray],
                 shards: int = 1, dtype: str = "float32", tokenizer: str = "json") -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    names = sorted(wts)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        fname = (f"model-{s + 1:05d}-of-{shards:05d}.safetensors" if shards > 1
                 else "model.safetensors")
        t = {n: wts[n] for n in part}
        if dtype != "float32":
            tt = {n: torch.from_numpy(v).to(getattr(torch, dtype)) for n, v in t.items()}
            from safetensors.torch import save_file as save_pt
            save_pt(tt, str(folder / fname))
        else:
            save_file(t, str(folder / fname))
        weight_map.update({n: fname for n in part})
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}))
    if tokenizer == "json":
        write_tokenizer_json(folder, cfg["vocab_size"])
    elif tokenizer == "spm":
        write_spm(folder, cfg["vocab_size"])
    return folder


WORDS = ["hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "fast", "slow",
         "red", "blue", "green", "one", "two", "three", "is", "and"]


def write_tokenizer_json(folder: Path, vocab_size: int) -> None:
    """A byte-level BPE-free WordLevel-ish tokenizer: specials, words, then single characters."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<用户>": 3, "<AI>": 4}
    for wd in WORDS:
        vocab[wd] = len(vocab)
    for c in "abcdefghijklmnopqrstuvwxyz.,!?":
        vocab.setdefault(c, len(vocab))
    assert len(vocab) <= vocab_size
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens(["<unk>", "<s>", "</s>"])
    tk.add_tokens(["<用户>", "<AI>"])
    tk.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}))


def write_spm(folder: Path, vocab_size: int) -> None:
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    rng = np.random.default_rng(0)
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(200)) + "\n你好 世界\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, user_defined_symbols=["<用户>", "<AI>"],
        hard_vocab_limit=False, minloglevel=2, bos_id=1, eos_id=2, unk_id=0)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}))


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
