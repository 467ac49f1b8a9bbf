"""Tiny random MiniCPM models for tests: config presets, weights in Hugging Face naming, and
Hugging Face-layout folders (config.json, safetensors, tokenizer.json) written at test time.

The tokenizer is SentencePiece-style (``▁`` for spaces, ``<0xNN>`` byte fallback, BOS ``<s>``,
EOS ``</s>``, MiniCPM's ``<用户>`` / ``<AI>`` as user-defined tokens). Every multi-character piece
is ``▁`` plus a word prefix, so a piece can be reached by exactly one merge; that makes
llama.cpp's SPM (score-driven bigram merges) and the ``tokenizers`` BPE (rank-driven merges)
produce the same ids for the same text.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# --- configs -------------------------------------------------------------------------------------

#: MiniCPM-1/2's published μP constants (2B, 1B, 2B-128k and MoE-8x2B all use them).
PUBLISHED_SCALE_EMB = 12.0
PUBLISHED_SCALE_DEPTH = 1.4
PUBLISHED_DIM_MODEL_BASE = 256

#: MiniCPM-2B-sft's chat template, as its tokenizer_config.json carries it.
MINICPM_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{'<用户>' + message['content'].strip() + '<AI>'}}"
    "{% else %}{{message['content'].strip()}}{% endif %}{% endfor %}"
)


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


# --- tokenizer -----------------------------------------------------------------------------------

SPACE = "▁"
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
USER_DEFINED_TOKENS = ("<用户>", "<AI>")
_WORDS = ("the", "and", "that", "this", "with", "hello", "world", "def", "return", "import",
          "print", "error", "python", "data", "plot", "model", "value", "is", "of", "to", "in",
          "it", "a", "what", "how", "why", "you", "for", "not", "list")
_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
          ".,:;!?'\"()[]{}<>=+-*/_#%&@$\\|`~^")

# Token types as GGUF / SentencePiece number them.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class TinyVocab:
    """The pieces (id order), their SentencePiece scores and types, and the BPE merges that
    reach every multi-character piece."""

    pieces: list[str]
    scores: list[float]
    types: list[int]
    merges: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def bos_id(self) -> int:
        return self.pieces.index("<s>")

    @property
    def eos_id(self) -> int:
        return self.pieces.index("</s>")

    @property
    def unk_id(self) -> int:
        return self.pieces.index("<unk>")


def tiny_vocab(size: int = 512) -> TinyVocab:
    """A SentencePiece-style vocabulary of exactly ``size`` pieces: <unk>, <s>, </s>, the 256
    byte tokens, <用户>, <AI>, ▁ and single characters, ``▁``+prefix pieces of common words
    (score falls with id, as in SentencePiece), and unreachable ``<unused…>`` padding."""
    pieces: list[str] = list(SPECIAL_TOKENS)
    types = [UNKNOWN, CONTROL, CONTROL]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    pieces += list(USER_DEFINED_TOKENS)
    types += [USER_DEFINED] * len(USER_DEFINED_TOKENS)
    normal: list[str] = [SPACE, *_CHARS]
    merges: list[tuple[str, str]] = []
    seen = set(normal)
    for word in _WORDS:
        for n in range(1, len(word) + 1):
            piece = SPACE + word[:n]
            if piece not in seen:
                seen.add(piece)
                normal.append(piece)
                merges.append((piece[:-1], piece[-1]))
    pieces += normal
    types += [NORMAL] * len(normal)
    if len(pieces) > size:
        raise ValueError(f"the tiny vocabulary needs at least {len(pieces)} tokens, got {size}")
    n_pad = size - len(pieces)
    pieces += [f"<unused{k}>" for k in range(n_pad)]
    types += [UNUSED] * n_pad
    # SentencePiece scores: specials/bytes 0, normal pieces -rank (earlier = merged first).
    scores = [0.0] * len(pieces)
    for k, t in enumerate(types):
        if t == NORMAL:
            scores[k] = -float(k)
        elif t == UNUSED:
            scores[k] = -1e9
    # BPE ranks follow the same order as the scores.
    index = {p: k for k, p in enumerate(pieces)}
    merges.sort(key=lambda m: index[m[0] + m[1]])
    return TinyVocab(pieces, scores, types, merges)


def build_tokenizer_json(vocab: TinyVocab) -> dict[str, Any]:
    """tokenizer.json for the ``tokenizers`` library, shaped like transformers' LlamaConverter
    output (legacy Llama/MiniCPM): prepend ▁, spaces → ▁, BPE with byte fallback."""
    added = []
    for k, (p, t) in enumerate(zip(vocab.pieces, vocab.types, strict=True)):
        if t in (UNKNOWN, CONTROL, USER_DEFINED):
            added.append({"id": k, "content": p, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False,
                          "special": t != USER_DEFINED or p in USER_DEFINED_TOKENS})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab.bos_id], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {p: k for k, p in enumerate(vocab.pieces)},
            "merges": [list(m) for m in vocab.merges]},
    }


def tokenizer_config(vocab: TinyVocab) -> dict[str, Any]:
    return {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 20,
        "chat_template": MINICPM_CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(k): {"content": p, "lstrip": False, "rstrip": False, "normalized": False,
                     "single_word": False, "special": True}
            for k, (p, t) in enumerate(zip(vocab.pieces, vocab.types, strict=True))
            if t in (UNKNOWN, CONTROL, USER_DEFINED)},
    }


def hf_tokenizer(vocab: TinyVocab | None = None) -> Any:
    """A ``tokenizers.Tokenizer`` for the tiny vocabulary (no file needed)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(build_tokenizer_json(vocab or tiny_vocab())))


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


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (half to even), still as float32: what a
    bfloat16 checkpoint holds, for references that compare against one."""
    return (_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


_ST_DTYPES = {"float32": ("F32", np.float32), "float16": ("F16", np.float16),
              "bfloat16": ("BF16", None)}


def save_safetensors(tensors: dict[str, np.ndarray], path: str | Path,
                     dtype: str = "float32") -> int:
    """Write a .safetensors file (8-byte header length, JSON header, raw little-endian data).
    Written by hand because numpy has no bfloat16 and safetensors.numpy would need ml_dtypes.
    Returns the number of tensor bytes."""
    tag, np_dtype = _ST_DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, a in tensors.items():
        raw = _bf16_bits(a) if np_dtype is None else np.ascontiguousarray(a, dtype=np_dtype)
        data = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the format asks for 8-byte alignment of the data
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    return offset
