"""Vision tests run headless and single-threaded (the machine is shared)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


# --- a tiny random MiniCPM-V 2.0 folder ----------------------------------------------------------
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

VISION_TOKENS = ("<image>", "</image>", "<slice>", "</slice>")
TINY_TOWER = dict(hidden_size=32, intermediate_size=48, num_layers=3, num_heads=2, patch_size=14,
                  image_size=56)  # 4×4 position grid; 3 blocks stored, the last one dropped
TINY_V = dict(query_num=16, max_slice_nums=9, scale_resolution=56, patch_size=14,
              slice_mode=True, drop_vision_last_layer=True, resampler_heads=2)


def tower_weights(rng: np.random.Generator, t: dict[str, Any]) -> dict[str, np.ndarray]:
    d, i, p = t["hidden_size"], t["intermediate_size"], t["patch_size"]
    g = t["image_size"] // p

    def w(*shape: int, s: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * s).astype(np.float32)

    out = {"patch_embed.proj.weight": w(d, 3, p, p), "patch_embed.proj.bias": w(d),
           "pos_embed": w(1, g * g, d, s=0.3), "norm.weight": 1 + w(d), "norm.bias": w(d),
           "attn_pool.latent": w(1, 1, d)}  # present in the real file, unused
    for b in range(t["num_layers"]):
        q = f"blocks.{b}."
        out |= {q + "norm1.weight": 1 + w(d), q + "norm1.bias": w(d),
                q + "attn.qkv.weight": w(3 * d, d, s=0.15), q + "attn.qkv.bias": w(3 * d),
                q + "attn.proj.weight": w(d, d, s=0.15), q + "attn.proj.bias": w(d),
                q + "norm2.weight": 1 + w(d), q + "norm2.bias": w(d),
                q + "mlp.fc1.weight": w(i, d, s=0.15), q + "mlp.fc1.bias": w(i),
                q + "mlp.fc2.weight": w(d, i, s=0.15), q + "mlp.fc2.bias": w(d)}
    return out


def resampler_weights(rng: np.random.Generator, nq: int, dim: int, kv: int
                      ) -> dict[str, np.ndarray]:
    def w(*shape: int, s: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * s).astype(np.float32)

    return {"query": w(nq, dim, s=0.5), "kv_proj.weight": w(dim, kv),
            "attn.in_proj_weight": w(3 * dim, dim), "attn.in_proj_bias": w(3 * dim, s=0.05),
            "attn.out_proj.weight": w(dim, dim), "attn.out_proj.bias": w(dim, s=0.05),
            "ln_q.weight": 1 + w(dim, s=0.05), "ln_q.bias": w(dim, s=0.05),
            "ln_kv.weight": 1 + w(dim, s=0.05), "ln_kv.bias": w(dim, s=0.05),
            "ln_post.weight": 1 + w(dim, s=0.05), "ln_post.bias": w(dim, s=0.05),
            "proj": w(dim, dim, s=dim ** -0.5 * 3)}


def write_tiny_minicpmv(folder: Path, seed: int = 0, max_positions: int = 512
                        ) -> tuple[Path, Any, dict[str, np.ndarray]]:
    """A MiniCPM-V 2.0-layout folder: llm.* / vpm.* (timm names) / resampler.* safetensors,
    config.json with the MiniCPM-V fields, and the tiny tokenizer with the image markers."""
    from minicpm.testing import TinyConfig, random_weights, tiny_vocab, write_hf_folder
    from minicpm.testing.safetensors_writer import save_safetensors
    from minicpm.testing.tiny_tokenizer import USER_DEFINED

    cfg = TinyConfig(max_position_embeddings=max_positions)
    vocab = tiny_vocab(cfg.vocab_size)
    for tok in VISION_TOKENS:  # take over <unused…> slots, as user-defined pieces
        k = vocab.pieces.index(next(p for p in vocab.pieces if p.startswith("<unused")))
        vocab.pieces[k], vocab.types[k], vocab.scores[k] = tok, USER_DEFINED, 0.0
    text_w = random_weights(cfg, seed)
    write_hf_folder(cfg, text_w, folder, vocab=vocab)
    (folder / "model.safetensors").unlink()
    rng = np.random.default_rng(seed + 1)
    tw = tower_weights(rng, TINY_TOWER)
    rw = resampler_weights(rng, TINY_V["query_num"], cfg.hidden_size, TINY_TOWER["hidden_size"])
    state = {f"llm.{k}": v for k, v in text_w.items()}
    state |= {f"vpm.{k}": v for k, v in tw.items()} | {f"resampler.{k}": v for k, v in rw.items()}
    names = sorted(state)
    half = len(names) // 2  # two shards, as the real checkpoint has
    index = {}
    for s, part in enumerate((names[:half], names[half:])):
        fname = f"model-{s + 1:05d}-of-00002.safetensors"
        save_safetensors({n: state[n] for n in part}, folder / fname)
        index |= dict.fromkeys(part, fname)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    hf = json.loads((folder / "config.json").read_text())
    hf |= {"architectures": ["MiniCPMV"], "model_type": "minicpmv",
           "vision_encoder": "vit_so400m_patch14_siglip_384.webli",
           "vision_config": {**TINY_TOWER, "hidden_act": "gelu"}, **TINY_V}
    (folder / "config.json").write_text(json.dumps(hf, indent=1))
    return folder, cfg, {"text": text_w, "vpm": tw, "resampler": rw}


@pytest.fixture(scope="session")
def tiny_v(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_minicpmv(tmp_path_factory.mktemp("minicpmv") / "MiniCPM-V-tiny")
