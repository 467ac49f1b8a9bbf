"""SigLIP tower vs transformers' SiglipVisionModel (same tiny random weights), and the
resampler vs a plain float64 numpy reference written from the published formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from minicpm.vision.resampler import Resampler, sincos_2d  # noqa: E402
from minicpm.vision.siglip import (  # noqa: E402
    SiglipConfig,
    SiglipTower,
    convert_hf_siglip,
    infer_config,
    num_layers_in,
)

TINY = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
            patch_size=14, image_size=56, layer_norm_eps=1e-6)


def _hf_model(layers: int, seed: int = 0):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    cfg = SiglipVisionConfig(**{**TINY, "num_hidden_layers": layers}, vision_use_head=False,
                             attn_implementation="eager")
    m = SiglipVisionModel(cfg).eval()
    with torch.no_grad():  # HF initialises LayerNorms to 1/0 and biases to 0: make them random
        for name, p in m.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if "norm" in name or "bias" in name else 0.02))
    return m


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("size", [(56, 56), (84, 112)])  # native 4×4 grid, then 6×8 (upsampled)
def test_tower_matches_transformers(size):
    """Our tower built with N+1 layers and the last dropped == SiglipVisionModel with N."""
    hf_full = _hf_model(layers=3)
    hf = _hf_model(layers=2)
    hf.load_state_dict({k: v for k, v in hf_full.state_dict().items() if "layers.2." not in k})
    state = convert_hf_siglip(hf_full.state_dict())
    assert num_layers_in(state) == 3
    cfg = SiglipConfig.from_dict({**TINY, "hidden_act": "gelu_pytorch_tanh",
                                  "drop_last_layer": True, "pos_antialias": False})
    ours = SiglipTower(cfg).eval()
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not missing and unexpected == [k for k in state if k.startswith("blocks.2.")]
    x = torch.randn(2, 3, size[1], size[0])
    with torch.no_grad():
        ref = hf(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
        got = ours(x)
    assert got.shape == ref.shape == (2, (size[0] // 14) * (size[1] // 14), 48)
    assert _rel(got, ref) < 1e-4


def test_infer_config_and_timm_defaults():
    state = convert_hf_siglip(_hf_model(3).state_dict())
    cfg = infer_config(state, num_heads=4)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.pos_grid) == (48, 80, 3, 4)
    assert cfg.kept_layers == 2 and cfg.act == "gelu" and cfg.pos_antialias
    so = SiglipConfig()
    assert (so.hidden_size, so.intermediate_size, so.num_layers, so.pos_grid) == (1152, 4304, 27, 27)


def test_padding_of_odd_sizes():
    tower = SiglipTower(SiglipConfig.from_dict(TINY)).eval()
    with torch.no_grad():
        assert tower(torch.randn(1, 3, 50, 60)).shape == (1, 4 * 5, 48)


# --- resampler ---------------------------------------------------------------------------------
def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _sincos64(dim: int, rows: int, cols: int) -> np.ndarray:
    def one(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], 1)
    r, c = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                       indexing="ij")
    return np.concatenate([one(dim // 2, c), one(dim // 2, r)], 1)  # column half first


def _reference(p: dict[str, np.ndarray], x: np.ndarray, grid: tuple[int, int],
               heads: int) -> np.ndarray:
    d = p["query"].shape[1]
    nq = p["query"].shape[0]
    g = math.isqrt(nq)
    kv = _ln(x @ p["kv_proj.weight"].T, p["ln_kv.weight"], p["ln_kv.bias"])
    q = _ln(p["query"], p["ln_q.weight"], p["ln_q.bias"]) + _sincos64(d, g, g)
    k = kv + _sincos64(d, *grid)
    wq, wk, wv = np.split(p["attn.in_proj_weight"], 3)
    bq, bk, bv = np.split(p["attn.in_proj_bias"], 3)
    Q, K, V = q @ wq.T + bq, k @ wk.T + bk, kv @ wv.T + bv
    hd = d // heads
    outs = []
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        a = Q[:, s] @ K[:, s].T / math.sqrt(hd)
        a = np.exp(a - a.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        outs.append(a @ V[:, s])
    o = np.concatenate(outs, 1) @ p["attn.out_proj.weight"].T + p["attn.out_proj.bias"]
    return _ln(o, p["ln_post.weight"], p["ln_post.bias"]) @ p["proj"]


@pytest.mark.parametrize("grid", [(4, 4), (3, 7), (7, 3)])
def test_resampler_matches_float64_reference(grid):
    torch.manual_seed(1)
    r = Resampler(num_queries=16, embed_dim=32, num_heads=4, kv_dim=24).eval()
    with torch.no_grad():
        for name, prm in r.named_parameters():
            if name != "pos_embed":
                prm.copy_(torch.randn_like(prm) * (0.3 if "ln" not in name else 0.1)
                          + (1.0 if name.endswith("ln_q.weight") else 0.0))
    x = torch.randn(2, grid[0] * grid[1], 24)
    with torch.no_grad():
        got = r(x, grid).double().numpy()
    p = {k: v.double().numpy() for k, v in r.state_dict().items()}
    for b in range(2):
        ref = _reference(p, x[b].double().numpy(), grid, heads=4)
        assert np.abs(got[b] - ref).max() / np.abs(ref).max() < 1e-5
    assert got.shape == (2, 16, 32)


def test_sincos_layout():
    pe = sincos_2d(8, 2, 3)
    assert pe.shape == (6, 8)
    np.testing.assert_allclose(pe, _sincos64(8, 2, 3), atol=1e-6)
    # first half encodes the column: rows 0 and 1 of the same column agree there
    np.testing.assert_allclose(pe[1, :4], pe[4, :4])
