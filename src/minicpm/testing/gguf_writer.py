"""Write tiny MiniCPM models as GGUF files with gguf-py, the way llama.cpp's converter does.

What llama.cpp (as vendored in llama-cpp-python 0.3.36) expects of arch ``minicpm``
(src/models/minicpm.cpp, which reuses the Granite graph):

- ``minicpm.embedding_scale``: the embeddings are multiplied by it (scale_emb).
- ``minicpm.residual_scale``: every attention and FFN branch is multiplied by it before the
  residual add. It is the *already divided* value scale_depth / sqrt(n_layer).
- ``minicpm.logit_scale``: logits are **divided** by it, so it must be hidden / dim_model_base.
  When missing, llama.cpp falls back to 256 / n_embd, the inverse: a file without the key runs,
  but wrongly. (embedding_scale falls back to 12 and residual_scale to 1.4/sqrt(L), which are
  right for MiniCPM-1/2.)
- rope type NORM (adjacent pairs), so q/k rows are permuted from Hugging Face's rotate-half
  layout exactly as convert_hf_to_gguf.py's ``LlamaModel.permute`` does.
- tied embeddings: no ``output.weight``; llama.cpp then reuses ``token_embd``.
- MoE: ``ffn_gate_inp`` (router) and stacked ``ffn_{gate,up,down}_exps``, with
  ``minicpm.expert_count`` / ``expert_used_count``; routing is softmax → top-k → renormalise.
- dynamic-NTK rope scaling has no GGUF form; the converter drops it, and so do we.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .tiny import MINICPM_CHAT_TEMPLATE, TinyConfig, TinyVocab, expert_names, tiny_vocab

MUP_KEYS = ("embedding_scale", "residual_scale", "logit_scale")

_DTYPES = ("f32", "f16", "q8_0", "q4_0")
_QUANTS = {"q8_0": "Q8_0", "q4_0": "Q4_0"}


def permute_for_rope(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Hugging Face rotate-half row order → llama.cpp's adjacent-pair order (per head, rows
    [0..d/2) and [d/2..d) are interleaved). Same as convert_hf_to_gguf's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_tensors(cfg: TinyConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF-named weights → GGUF-named float32 arrays (numpy shape (out, in), which ggml reads as
    {in, out}); experts stacked as (n_expert, out, in)."""
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    t: dict[str, np.ndarray] = {"token_embd.weight": weights["model.embed_tokens.weight"],
                                "output_norm.weight": weights["model.norm.weight"]}
    if not cfg.tie_word_embeddings:
        t["output.weight"] = weights["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        t[b + "attn_norm.weight"] = weights[p + "input_layernorm.weight"]
        t[b + "attn_q.weight"] = permute_for_rope(weights[p + "self_attn.q_proj.weight"], nh, nh)
        t[b + "attn_k.weight"] = permute_for_rope(weights[p + "self_attn.k_proj.weight"], nh, nkv)
        t[b + "attn_v.weight"] = weights[p + "self_attn.v_proj.weight"]
        t[b + "attn_output.weight"] = weights[p + "self_attn.o_proj.weight"]
        t[b + "ffn_norm.weight"] = weights[p + "post_attention_layernorm.weight"]
        if cfg.num_experts:
            names = [expert_names(i, e) for e in range(cfg.num_experts)]
            t[b + "ffn_gate_inp.weight"] = weights[p + "mlp.gate.weight"]
            for slot in ("gate", "up", "down"):
                t[b + f"ffn_{slot}_exps.weight"] = np.stack([weights[n[slot]] for n in names])
        else:
            t[b + "ffn_gate.weight"] = weights[p + "mlp.gate_proj.weight"]
            t[b + "ffn_up.weight"] = weights[p + "mlp.up_proj.weight"]
            t[b + "ffn_down.weight"] = weights[p + "mlp.down_proj.weight"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


def write_gguf(cfg: TinyConfig, weights: dict[str, np.ndarray], path: str | Path,
               dtype: str = "f32", mup_keys: bool | Iterable[str] = True,
               vocab: TinyVocab | None = None, name: str = "tiny-minicpm",
               chat_template: str | None = MINICPM_CHAT_TEMPLATE,
               overrides: dict[str, Any] | None = None) -> Path:
    """Write ``cfg``/``weights`` as a GGUF file of arch ``minicpm`` (or ``llama`` for a
    llama-format config). ``dtype``: "f32", "f16", "q8_0" or "q4_0" for the matrices (norms
    stay f32).
    ``mup_keys``: True writes all three μP keys, False none, or an iterable of the key names
    (embedding_scale, residual_scale, logit_scale) to write — to build broken files on purpose.
    ``overrides``: metadata written instead of what ``cfg`` says, e.g.
    ``{"minicpm.attention.head_count_kv": 3}`` (int → uint32, float → float32, str): crafted
    files whose header disagrees with their tensors, as hostile downloads may."""
    import gguf

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    vocab = vocab or tiny_vocab(cfg.vocab_size)
    if len(vocab) != cfg.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} pieces, config says {cfg.vocab_size}")
    arch = "minicpm" if cfg.is_minicpm else "llama"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                     "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[dtype])
    if cfg.num_experts:
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
    if cfg.is_minicpm:
        wanted = set(MUP_KEYS) if mup_keys is True else set() if mup_keys is False \
            else set(mup_keys)
        if unknown := wanted - set(MUP_KEYS):
            raise ValueError(f"unknown μP keys {sorted(unknown)}; use {MUP_KEYS}")
        if "embedding_scale" in wanted:
            w.add_embedding_scale(cfg.embedding_scale)
        if "residual_scale" in wanted:
            w.add_residual_scale(cfg.residual_scale)
        if "logit_scale" in wanted:
            w.add_logit_scale(cfg.logit_scale)

    # SentencePiece vocabulary, as convert_hf_to_gguf's _set_vocab_sentencepiece writes it.
    _spm_vocab(w, vocab, chat_template)

    for key, val in (overrides or {}).items():
        vtype = gguf.GGUFValueType.STRING if isinstance(val, str) else \
            gguf.GGUFValueType.FLOAT32 if isinstance(val, float) else gguf.GGUFValueType.UINT32
        w.kv_data[0].pop(key, None)
        w.add_key_value(key, val, vtype)

    for tname, arr in gguf_tensors(cfg, weights).items():
        if arr.ndim == 1 or dtype == "f32":
            w.add_tensor(tname, arr)
        elif dtype == "f16":
            w.add_tensor(tname, arr.astype(np.float16))
        else:
            qtype = gguf.GGMLQuantizationType[_QUANTS[dtype]]
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(tname, q, raw_shape=q.shape, raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def dequantized_weights(cfg: TinyConfig, weights: dict[str, np.ndarray],
                        dtype: str) -> dict[str, np.ndarray]:
    """The HF-named weights as a ``dtype`` GGUF stores them (rounded to f16, or Q8_0-quantized
    and back), so a float64 reference can be run on exactly what llama.cpp multiplies with."""
    import gguf

    if dtype == "f32":
        return dict(weights)
    out = {}
    for k, v in weights.items():
        a = np.ascontiguousarray(v, dtype=np.float32)
        if a.ndim == 1:
            out[k] = a
        elif dtype == "f16":
            out[k] = a.astype(np.float16).astype(np.float32)
        elif dtype in _QUANTS:
            qtype = gguf.GGMLQuantizationType[_QUANTS[dtype]]
            q = gguf.quants.quantize(a, qtype)
            out[k] = gguf.quants.dequantize(q, qtype).reshape(a.shape)
        else:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return out


# --- today's MiniCPM architectures ---------------------------------------------------------------
# Checked against llama.cpp as vendored in llama-cpp-python 0.3.36:
# - arch ``minicpm3`` (src/models/minicpm3.cpp): MLA attention. Keys q_lora_rank, kv_lora_rank,
#   attention.key_length (= qk_nope + qk_rope) and rope.dimension_count (= qk_rope); the value head
#   is n_embd / n_head (no value_length key, as the converter writes none). Tensors attn_q_a,
#   attn_q_a_norm, attn_q_b, attn_kv_a_mqa (kv_lora_rank + qk_rope rows), attn_kv_a_norm,
#   attn_kv_b, attn_output; scale_emb 12 / scale_depth 1.4 / dim_model_base 256 are hard-coded.
# - "minicpm5" is not an architecture: MiniCPM5-1B is a plain LlamaForCausalLM whose GGUF has a
#   byte-level BPE vocabulary with tokenizer.ggml.pre = "minicpm5" (its own pre-tokenizer regex,
#   merges ignored for whole words), so a tiny one is arch ``llama`` with such a vocabulary.

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}"
    "{% endif %}"
)


def _rand(rng: np.random.Generator, *shape: int, gain: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * gain / np.sqrt(shape[-1])).astype(np.float32)


def _norm(rng: np.random.Generator, n: int) -> np.ndarray:
    return (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def write_minicpm3_gguf(path: str | Path, seed: int = 0, *, hidden: int = 64, n_layer: int = 2,
                        n_head: int = 4, q_lora_rank: int = 32, kv_lora_rank: int = 16,
                        qk_nope: int = 16, qk_rope: int = 8, ffn: int = 128, ctx: int = 256,
                        name: str = "tiny-MiniCPM3",
                        chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """A random tiny MiniCPM3 (arch ``minicpm3``) with the SentencePiece tiny vocabulary."""
    import gguf

    vocab = tiny_vocab(512)
    rng = np.random.default_rng(seed)
    v_head = hidden // n_head
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "minicpm3")
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(vocab))
    w.add_q_lora_rank(q_lora_rank)
    w.add_kv_lora_rank(kv_lora_rank)
    w.add_key_length(qk_nope + qk_rope)
    w.add_rope_dimension_count(qk_rope)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    _spm_vocab(w, vocab, chat_template)
    t = {"token_embd.weight": (0.1 * rng.standard_normal((len(vocab), hidden))).astype(np.float32),
         "output_norm.weight": _norm(rng, hidden)}
    for i in range(n_layer):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"] = _norm(rng, hidden)
        t[b + "attn_q_a.weight"] = _rand(rng, q_lora_rank, hidden)
        t[b + "attn_q_a_norm.weight"] = _norm(rng, q_lora_rank)
        t[b + "attn_q_b.weight"] = _rand(rng, n_head * (qk_nope + qk_rope), q_lora_rank)
        t[b + "attn_kv_a_mqa.weight"] = _rand(rng, kv_lora_rank + qk_rope, hidden)
        t[b + "attn_kv_a_norm.weight"] = _norm(rng, kv_lora_rank)
        t[b + "attn_kv_b.weight"] = _rand(rng, n_head * (qk_nope + v_head), kv_lora_rank)
        t[b + "attn_output.weight"] = _rand(rng, hidden, n_head * v_head, gain=3)
        t[b + "ffn_norm.weight"] = _norm(rng, hidden)
        t[b + "ffn_gate.weight"] = _rand(rng, ffn, hidden)
        t[b + "ffn_up.weight"] = _rand(rng, ffn, hidden)
        t[b + "ffn_down.weight"] = _rand(rng, hidden, ffn, gain=3)
    return _finish(w, t, path)


def bpe_vocab() -> tuple[list[str], list[int], list[str]]:
    """A byte-level BPE vocabulary (GPT-2 byte alphabet, a few merges, ChatML specials):
    (tokens, token types, merges). Ids 0–2: <unk> <s> </s>; 3–4: <|im_start|> <|im_end|>."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    byte_chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            byte_chars[b] = chr(b)
        else:
            byte_chars[b] = chr(256 + extra)
            extra += 1
    space = byte_chars[ord(" ")]
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + [byte_chars[b] for b in range(256)]
    merges: list[str] = []
    for word in ("the", "and", "hello", "world", "python", "data", "what", "is", "in", "you"):
        pieces = [space, *word]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            if pieces[0] not in tokens:
                tokens.append(pieces[0])
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    return tokens, types, merges


def write_minicpm5_gguf(path: str | Path, seed: int = 0, *, hidden: int = 64, n_layer: int = 2,
                        n_head: int = 4, n_head_kv: int = 2, ffn: int = 128, ctx: int = 256,
                        name: str = "tiny-MiniCPM5",
                        chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """A random tiny MiniCPM5: arch ``llama`` (GQA, untied head) with a byte-level BPE vocabulary
    whose pre-tokenizer is ``minicpm5``, as openbmb/MiniCPM5-1B-GGUF's files have."""
    import gguf

    from .tiny import TinyConfig, random_weights

    tokens, types, merges = bpe_vocab()
    cfg = TinyConfig(vocab_size=len(tokens), hidden_size=hidden, num_hidden_layers=n_layer,
                     num_attention_heads=n_head, num_key_value_heads=n_head_kv,
                     intermediate_size=ffn, max_position_embeddings=ctx,
                     architecture="llama", tie_word_embeddings=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("minicpm5")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(4)  # <|im_end|> ends a turn
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    return _finish(w, gguf_tensors(cfg, random_weights(cfg, seed)), path)


def _spm_vocab(w, vocab: TinyVocab, chat_template: str | None) -> None:  # type: ignore[no-untyped-def]
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab.pieces)
    w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    w.add_bos_token_id(vocab.bos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_unk_token_id(vocab.unk_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)


def _finish(w, tensors: dict[str, np.ndarray], path: Path) -> Path:  # type: ignore[no-untyped-def]
    for tname, arr in tensors.items():
        w.add_tensor(tname, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
