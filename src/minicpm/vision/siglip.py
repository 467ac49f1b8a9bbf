"""The SigLIP vision tower as MiniCPM-V 2.0 runs it.

MiniCPM-V 2.0 builds timm's ``vit_so400m_patch14_siglip_384`` (1152 wide, 27 blocks, 16 heads,
MLP 4304, patch 14, a 27×27 learned position grid) with ``dynamic_img_size``, removes the
attention-pool head and **drops the last block**; features are the final LayerNorm's output
for every patch (no class token). Pictures of any size (multiples of 14) go in: the position
grid is resized bicubically to the picture's patch grid, as timm does (antialiased).

Weights use timm's names (``patch_embed.proj``, ``pos_embed``, ``blocks.N.attn.qkv``, ``norm``),
as MiniCPM-V 2.0's checkpoint stores them under ``vpm.``; ``convert_hf_siglip`` maps
transformers' ``SiglipVisionModel`` names (used by MiniCPM-Llama3-V 2.5 and later) onto them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MEAN = STD = (0.5, 0.5, 0.5)  # IMAGENET_INCEPTION_MEAN / STD: pixels map to [-1, 1]


@dataclass
class SiglipConfig:
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27  # as stored in the checkpoint, before dropping
    num_heads: int = 16
    patch_size: int = 14
    image_size: int = 384  # the position grid is image_size // patch_size square
    layer_norm_eps: float = 1e-6
    # timm 0.9.10 (what MiniCPM-V 2.0 pins) builds this model with nn.GELU (erf); SigLIP was
    # trained with the tanh approximation, which transformers uses. The two differ by <1e-3.
    act: str = "gelu"  # "gelu" | "gelu_pytorch_tanh"
    drop_last_layer: bool = True
    pos_antialias: bool = True  # timm's resample_abs_pos_embed; transformers uses False

    @property
    def pos_grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def kept_layers(self) -> int:
        return self.num_layers - 1 if self.drop_last_layer else self.num_layers

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiglipConfig:
        names = set(cls.__dataclass_fields__)
        d = dict(d)
        if "num_hidden_layers" in d:  # transformers' spelling
            d["num_layers"] = d.pop("num_hidden_layers")
        if "num_attention_heads" in d:
            d["num_heads"] = d.pop("num_attention_heads")
        if "hidden_act" in d:
            d["act"] = d.pop("hidden_act")
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SO400M = SiglipConfig()  # vit_so400m_patch14_siglip_384, as MiniCPM-V 2.0 names it


def _act(name: str) -> Any:
    if name in ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unknown activation {name!r}")


class PatchEmbed(nn.Module):
    def __init__(self, cfg: SiglipConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)


class Attention(nn.Module):
    def __init__(self, cfg: SiglipConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # full (bidirectional)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, cfg: SiglipConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = _act(cfg.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: SiglipConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SiglipTower(nn.Module):
    """pixels [B, 3, H, W] in [-1, 1] (H, W multiples of 14) → features [B, H/14 · W/14, D]."""

    def __init__(self, cfg: SiglipConfig = SO400M):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_grid ** 2, cfg.hidden_size))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.kept_layers))
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def position_embedding(self, grid: tuple[int, int]) -> Tensor:
        """The learned square grid resized to (rows, cols) → [1, rows·cols, D]."""
        g = self.cfg.pos_grid
        if tuple(grid) == (g, g):
            return self.pos_embed
        pe = self.pos_embed.float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe, size=tuple(grid), mode="bicubic", align_corners=False,
                           antialias=self.cfg.pos_antialias)
        return pe.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(self.pos_embed.dtype)

    def forward(self, pixels: Tensor) -> Tensor:
        p = self.cfg.patch_size
        h, w = pixels.shape[-2:]
        if h % p or w % p:  # timm's dynamic_img_pad: zero-pad right and bottom
            pixels = F.pad(pixels, (0, (-w) % p, 0, (-h) % p))
        x = self.patch_embed.proj(pixels.to(self.pos_embed.dtype))  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2) + self.position_embedding(grid)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def preprocess(image: Any) -> Tensor:
    """A PIL RGB image → [3, H, W] float32 in [-1, 1] (ToTensor, then Normalize(0.5, 0.5))."""
    import numpy as np

    a = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return (a.permute(2, 0, 1) - MEAN[0]) / STD[0]


def convert_hf_siglip(state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """transformers' SiglipVisionModel / SiglipVisionTransformer names → ours (timm's).
    ``prefix`` is stripped first ("vpm." inside MiniCPM-V checkpoints), then any
    "vision_model." that transformers 4.x puts in front. The attention-pool head is dropped (MiniCPM-V does not use it)."""
    out: dict[str, Tensor] = {}
    qkv: dict[int, dict[str, dict[str, Tensor]]] = {}
    for key, t in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):].removeprefix("vision_model.")  # transformers 4.x nests it
        if k.startswith("head.") or ".head." in k:
            continue
        if k == "embeddings.patch_embedding.weight":
            out["patch_embed.proj.weight"] = t
        elif k == "embeddings.patch_embedding.bias":
            out["patch_embed.proj.bias"] = t
        elif k == "embeddings.position_embedding.weight":
            out["pos_embed"] = t.unsqueeze(0)
        elif k.startswith("post_layernorm."):
            out["norm." + k.split(".", 1)[1]] = t
        elif k.startswith("encoder.layers."):
            parts = k.split(".")
            i, rest = int(parts[2]), ".".join(parts[3:])
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj",
                                                                         "v_proj"):
                which, kind = rest.split(".")[1][0], rest.split(".")[2]
                qkv.setdefault(i, {}).setdefault(kind, {})[which] = t
                continue
            rest = (rest.replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
                    .replace("self_attn.out_proj", "attn.proj"))
            out[f"blocks.{i}.{rest}"] = t
    for i, kinds in qkv.items():
        for kind, parts in kinds.items():
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def num_layers_in(state: dict[str, Tensor]) -> int:
    """How many blocks a timm-named state dict holds."""
    idx = [int(k.split(".")[1]) for k in state if k.startswith("blocks.")]
    return max(idx) + 1 if idx else 0


def infer_config(state: dict[str, Tensor], **overrides: Any) -> SiglipConfig:
    """A SiglipConfig read off the tensor shapes of a timm-named state dict."""
    d = state["patch_embed.proj.weight"].shape[0]
    p = state["patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state["pos_embed"].shape[1])
    inter = state["blocks.0.mlp.fc1.weight"].shape[0]
    kw: dict[str, Any] = dict(hidden_size=d, intermediate_size=inter, patch_size=p,
                              image_size=grid * p, num_layers=num_layers_in(state),
                              num_heads=max(1, d // 72))  # SO400M: 1152 / 16 = 72 per head
    kw.update(overrides)
    return SiglipConfig(**kw)
