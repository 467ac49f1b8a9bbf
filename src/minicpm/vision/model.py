"""MiniCPM-V 2.0 in PyTorch: vision tower + resampler whose 64 outputs per picture replace the
``<unk>`` placeholders inside MiniCPM-2B's input embeddings.

    pictures  = slice_image(image)                    # source + up to 9 slices, sides % 14 == 0
    features  = resampler(vpm(pixels), grid)          # [64, 2304] per picture
    embeds    = llm.embed(ids)                        # μP scale_emb applied to text tokens only
    embeds[<image>+1 … </image>) = features           # image features are NOT scaled
    logits    = llm(input_embeds=embeds)

Folder layout (Hugging Face, ``openbmb/MiniCPM-V-2``): config.json (``model_type: minicpmv``,
MiniCPM text fields plus ``query_num``, ``max_slice_nums``, ``scale_resolution``,
``patch_size``, ``slice_mode``, ``drop_vision_last_layer``, ``vision_encoder``), safetensors
with ``llm.*`` (MiniCPM-2B), ``vpm.*`` (timm SigLIP) and ``resampler.*``, and the tokenizer.
An optional ``vision_config`` dict describes a non-SO400M tower (tiny test models).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelFileError, UnsupportedModelError
from ..torch import loader
from ..torch.model import MiniCPM, ModelConfig
from . import slicing
from .resampler import Resampler
from .siglip import SiglipConfig, SiglipTower, convert_hf_siglip, preprocess

log = logging.getLogger("minicpm.vision")

SPECIALS = (slicing.IM_START, slicing.IM_END, slicing.SLICE_START, slicing.SLICE_END,
            slicing.UNK)
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


def is_minicpmv_config(cfg: dict[str, Any]) -> bool:
    arch = " ".join(cfg.get("architectures") or []) + " " + str(cfg.get("model_type", ""))
    return bool(re.search(r"minicpmv|minicpm-v", arch, re.I))


def is_minicpmv_folder(path: str | Path) -> bool:
    """True for a Hugging Face folder holding MiniCPM-V (what the torch backend should route
    to :class:`minicpm.vision.backend.TorchVisionBackend`)."""
    p = Path(path) / "config.json"
    try:
        return p.is_file() and is_minicpmv_config(json.loads(p.read_text("utf-8")))
    except (OSError, json.JSONDecodeError):
        return False


@dataclass
class VisionConfig:
    query_num: int = 64
    max_slice_nums: int = 9
    scale_resolution: int = 448
    patch_size: int = 14
    slice_mode: bool = True
    resampler_heads: int | None = None  # None: LLM width // 128, as published
    tower: SiglipConfig = field(default_factory=SiglipConfig)

    @classmethod
    def from_hf(cls, cfg: dict[str, Any], path: Path | str = "config.json") -> VisionConfig:
        enc = str(cfg.get("vision_encoder", "vit_so400m_patch14_siglip_384"))
        if "vision_config" in cfg:
            tower = SiglipConfig.from_dict(cfg["vision_config"])
        elif "so400m" in enc and "siglip" in enc:
            tower = SiglipConfig()
        else:
            raise UnsupportedModelError(path, f"vision encoder {enc!r} is not supported (only "
                                              "SigLIP-400M, as in MiniCPM-V 2.0)")
        tower.drop_last_layer = bool(cfg.get("drop_vision_last_layer", True))
        return cls(query_num=int(cfg.get("query_num", 64)),
                   max_slice_nums=int(cfg.get("max_slice_nums", 9)),
                   scale_resolution=int(cfg.get("scale_resolution", 448)),
                   patch_size=int(cfg.get("patch_size", tower.patch_size)),
                   slice_mode=bool(cfg.get("slice_mode", True)),
                   resampler_heads=cfg.get("resampler_heads"), tower=tower)


class MiniCPMV(nn.Module):
    def __init__(self, text: ModelConfig, vision: VisionConfig):
        super().__init__()
        self.vcfg = vision
        self.llm = MiniCPM(text)
        self.vpm = SiglipTower(vision.tower)
        heads = vision.resampler_heads or max(1, text.hidden_size // 128)
        self.resampler = Resampler(vision.query_num, text.hidden_size, heads,
                                   vision.tower.hidden_size)

    # --- pixels → features -------------------------------------------------------------------
    def layout(self, size: tuple[int, int]) -> slicing.SliceLayout:
        v = self.vcfg
        return slicing.layout(size, v.max_slice_nums, v.scale_resolution, v.patch_size,
                              never_split=not v.slice_mode)

    def pictures(self, image: Any) -> tuple[slicing.SliceLayout, list[Tensor]]:
        """A PIL image → its layout and the [3, H, W] tensors the tower sees (source first)."""
        v = self.vcfg
        s = slicing.slice_image(image, v.max_slice_nums, v.scale_resolution, v.patch_size,
                                never_split=not v.slice_mode)
        return s.layout, [preprocess(im) for im in s.images]

    @torch.inference_mode()
    def encode_pictures(self, pictures: list[Tensor]) -> Tensor:
        """[n, 64, hidden]: pictures of one size (the slices of an image) run as one batch."""
        p = self.vcfg.patch_size
        dev, dt = self.vpm.pos_embed.device, self.vpm.pos_embed.dtype
        out: list[Tensor | None] = [None] * len(pictures)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, pic in enumerate(pictures):
            groups.setdefault(tuple(pic.shape[-2:]), []).append(i)
        for (h, w), idx in groups.items():
            batch = torch.stack([pictures[i] for i in idx]).to(dev, dt)
            feats = self.resampler(self.vpm(batch), (-(-h // p), -(-w // p)))
            for j, i in enumerate(idx):
                out[i] = feats[j]
        return torch.stack(out)  # type: ignore[arg-type]

    def encode_image(self, image: Any) -> tuple[slicing.SliceLayout, Tensor]:
        lay, pics = self.pictures(image)
        return lay, self.encode_pictures(pics)

    # --- ids + features → input embeddings -------------------------------------------------
    def embed(self, ids: Tensor, features: Tensor | None, im_start: int, im_end: int) -> Tensor:
        """ids [T] and features [n, 64, H] (pictures in prompt order) → embeds [1, T, H]."""
        x = self.llm.embed(ids.view(1, -1))
        starts = (ids == im_start).nonzero().flatten() + 1
        ends = (ids == im_end).nonzero().flatten()
        if features is None or features.numel() == 0:
            if len(starts):
                raise ValueError("the prompt has image placeholders but no image features")
            return x
        q = self.vcfg.query_num
        if len(starts) != len(ends) or len(starts) != features.shape[0] or \
                not bool(((ends - starts) == q).all()):
            raise ValueError(f"{len(starts)} placeholders for {features.shape[0]} pictures, or a "
                             f"placeholder not {q} tokens long")
        idx = torch.cat([torch.arange(int(s), int(e), device=ids.device)
                         for s, e in zip(starts, ends, strict=True)])
        x = x.clone()
        x[0, idx] = features.reshape(-1, features.shape[-1]).to(x.dtype)
        return x


# --- loading ---------------------------------------------------------------------------------
def _split_state(files: list[Path], dtype: torch.dtype, device: str
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    llm: dict[str, Tensor] = {}
    vpm: dict[str, Tensor] = {}
    res: dict[str, Tensor] = {}
    for path in files:
        with loader.open_safetensors(path) as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                t = f.get_tensor(key)
                if key.startswith("llm."):
                    name = key[4:].removeprefix("model.")
                    if not name.endswith("rotary_emb.inv_freq"):
                        llm[name] = t.to(device=device, dtype=dtype)
                elif key.startswith("vpm."):
                    vpm[key[4:]] = t
                elif key.startswith("resampler."):
                    res[key[10:]] = t
    return llm, vpm, res


def load_minicpmv(folder: str | Path, device: str = "cpu", dtype: str | torch.dtype | None = None
                  ) -> tuple[MiniCPMV, dict[str, Any]]:
    """Load a MiniCPM-V folder; returns (model, raw config)."""

    folder = Path(folder)
    raw = loader.read_config(folder)
    if not is_minicpmv_config(raw):
        raise UnsupportedModelError(folder, "not a MiniCPM-V folder (config.json model_type is "
                                            f"{raw.get('model_type')!r})")
    dt = loader.resolve_dtype(dtype, device)
    text_raw = {**raw, "architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm"}
    try:
        text = loader.config_from_hf(text_raw)
        vision = VisionConfig.from_hf(raw, folder / "config.json")
    except (KeyError, ValueError, TypeError) as e:
        raise UnsupportedModelError(folder / "config.json", f"unsupported config ({e})") from e
    llm_state, vpm_state, res_state = _split_state(loader.weight_files(folder), dt, device)
    if "lm_head.weight" in llm_state and "tie_word_embeddings" not in raw:
        text.tie_word_embeddings = False
    if any(k.startswith(("embeddings.", "encoder.")) for k in vpm_state):
        vpm_state = convert_hf_siglip(vpm_state)  # transformers-named tower (V 2.5 and later)
    with torch.device("meta"):
        model = MiniCPMV(text, vision)
    if text.tie_word_embeddings:
        llm_state.pop("lm_head.weight", None)
    kept = vision.tower.kept_layers
    vpm_state = {k: v for k, v in vpm_state.items()
                 if not k.startswith("attn_pool.")
                 and not (k.startswith("blocks.") and int(k.split(".")[1]) >= kept)}
    state = {**{f"llm.{k}": v for k, v in llm_state.items()},
             **{f"vpm.{k}": v.to(device=device, dtype=dt) for k, v in vpm_state.items()},
             **{f"resampler.{k}": v.to(device=device, dtype=dt) for k, v in res_state.items()}}
    if "resampler.pos_embed" not in state:  # a fixed sin-cos table; recompute when absent
        from .resampler import sincos_2d

        g = int(vision.query_num ** 0.5)
        state["resampler.pos_embed"] = torch.from_numpy(
            sincos_2d(text.hidden_size, g, g)).to(device=device, dtype=dt)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelFileError(folder, f"weights missing from the checkpoint: {missing[:5]}"
                                     f"{' …' if len(missing) > 5 else ''}")
    extra = sorted(set(state) - set(expected))
    if extra:
        log.warning("ignoring %d unexpected tensors, e.g. %s", len(extra), extra[:3])
        for k in extra:
            state.pop(k)
    for k, t in state.items():
        if t.shape != expected[k].shape:
            raise ModelFileError(folder, f"{k} has shape {tuple(t.shape)}, config implies "
                                         f"{tuple(expected[k].shape)}")
    model.load_state_dict(state, assign=True)
    model.requires_grad_(False)
    return model.eval(), raw


# --- prompt ----------------------------------------------------------------------------------
def special_ids(tok: Any, folder: Path | str = "tokenizer") -> dict[str, int]:
    """Ids of <image>, </image>, <slice>, </slice>, <unk> in the model's tokenizer."""
    out: dict[str, int] = {}
    for s in SPECIALS:
        i = tok.token_id(s) if hasattr(tok, "token_id") else None
        if i is None:
            ids = tok.encode(s, add_bos=False)
            i = ids[0] if len(ids) == 1 else None
        if i is None:
            raise ModelFileError(folder, f"the tokenizer has no single token for {s!r}; this is "
                                         "not a MiniCPM-V tokenizer")
        out[s] = int(i)
    return out


def tokenize_with_images(tok: Any, text: str, ids_of: dict[str, int],
                         add_bos: bool = True) -> list[int]:
    """Tokenize a prompt whose placeholders are spelled out.

    Like transformers' LlamaTokenizer, the text is split only at ``<unk>`` (a special token:
    SentencePiece would otherwise spell it out in characters) and each run between is encoded
    whole, so ``<image>``/``<slice>`` pieces and the newlines between slice rows tokenize as
    they do in MiniCPM-V's own processor. A tokenizer that does not keep a marker as one token
    gets the markers mapped straight to their ids instead."""
    ids: list[int] = []
    if add_bos and getattr(tok, "adds_bos", True) and getattr(tok, "bos_id", None) is not None:
        ids.append(int(tok.bos_id))
    unk = ids_of[slicing.UNK]
    body: list[int] = []
    for part in re.split(f"({re.escape(slicing.UNK)})", text):
        if part == slicing.UNK:
            body.append(unk)
        elif part:
            body += tok.encode(part, add_bos=False)
    if all(body.count(ids_of[m]) == text.count(m) for m in SPECIALS):
        return ids + body
    for part in _SPECIAL_RE.split(text):
        if part in ids_of:
            ids.append(ids_of[part])
        elif part:
            ids += tok.encode(part, add_bos=False)
    return ids
