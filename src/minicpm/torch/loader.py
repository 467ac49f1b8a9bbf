"""Hugging Face folder → MiniCPM module: config.json (→ ModelConfig), (sharded) safetensors in
fp32/bf16/fp16 or GPTQ int4, checked against free memory before a byte is allocated."""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFileError, OutOfMemoryError, UnsupportedModelError
from .model import MiniCPM, ModelConfig
from .quantize import gptq_dequantize

log = logging.getLogger("minicpm.torch")

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
_ST_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "I8": 1, "U8": 1, "F64": 8,
             "BOOL": 1, "I16": 2}
_EXPERT = re.compile(r"^layers\.(\d+)\.mlp\.experts\.(\d+)\.(\w+)\.weight$")
_EXPERT_SLOT = {"gate_proj": "w_gate", "w1": "w_gate", "up_proj": "w_up", "w3": "w_up",
                "down_proj": "w_down", "w2": "w_down"}


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}") from None


def config_from_hf(cfg: dict[str, Any]) -> ModelConfig:
    """A Hugging Face config.json (MiniCPMForCausalLM or LlamaForCausalLM) → ModelConfig."""
    arch = " ".join(cfg.get("architectures") or []) + " " + str(cfg.get("model_type", ""))
    is_minicpm = "minicpm" in arch.lower()
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    eos = cfg.get("eos_token_id", 2)
    scaling = cfg.get("rope_scaling") or None
    if scaling is not None:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind not in ("dynamic", "default", None):
            raise ValueError(f"rope_scaling type {kind!r} is not supported (only 'dynamic')")
        scaling = None if kind in ("default", None) else {"type": "dynamic",
                                                           "factor": float(scaling["factor"])}
    return ModelConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rope_scaling=scaling,
        scale_emb=float(cfg.get("scale_emb", 1.0)) if is_minicpm else 1.0,
        scale_depth=float(cfg["scale_depth"]) if is_minicpm and cfg.get("scale_depth") else None,
        dim_model_base=(float(cfg["dim_model_base"])
                        if is_minicpm and cfg.get("dim_model_base") else None),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        num_experts=int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0),
        num_experts_per_tok=int(cfg.get("num_experts_per_tok", 2)),
        architecture="minicpm" if is_minicpm else "llama",
        bos_token_id=cfg.get("bos_token_id", 1),
        eos_token_id=list(eos) if isinstance(eos, list) else [int(eos)],
    )


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(folder / "config.json", f"cannot read it ({e})") from e


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
        files = [folder / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelFileError(folder, f"shard(s) listed in the index are missing: {missing}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        if list(folder.glob("*.bin")):
            raise UnsupportedModelError(folder, "only pytorch_model*.bin weights; the torch engine "
                                                "reads safetensors (convert them, or use a GGUF)")
        raise ModelFileError(folder, "no *.safetensors weights")
    return files


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header (names, dtypes, shapes) without reading the tensors; checks truncation."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelFileError(path, "truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise ModelFileError(path, "truncated or not a safetensors file")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ModelFileError(path, f"truncated: {size} bytes, header promises {8 + n + end}")
    return header


@dataclass
class Plan:
    config: ModelConfig
    files: list[Path]
    dense_params: int
    gptq: dict[str, Any] | None


def plan(folder: Path) -> Plan:
    raw = read_config(folder)
    arch = " ".join(raw.get("architectures") or []) + " " + str(raw.get("model_type", ""))
    if not re.search(r"minicpm|llama", arch, re.I) or re.search(r"minicpmv|minicpm3|vision", arch,
                                                                 re.I):
        raise UnsupportedModelError(folder, f"architecture {arch.strip()!r} is not a MiniCPM "
                                            "or Llama text model")
    try:
        cfg = config_from_hf(raw)
    except (KeyError, ValueError) as e:
        raise UnsupportedModelError(folder / "config.json", f"unsupported config ({e})") from e
    files = weight_files(folder)
    names: set[str] = set()
    for f in files:
        names |= set(safetensors_header(f)) - {"__metadata__"}
    if "lm_head.weight" in names and "tie_word_embeddings" not in raw:
        cfg.tie_word_embeddings = False  # a checkpoint with its own head uses it
    qc = raw.get("quantization_config") or _read_json(folder / "quantize_config.json")
    gptq = qc if qc and (qc.get("quant_method") == "gptq" or "bits" in qc) else None
    return Plan(cfg, files, cfg.num_parameters(), gptq)


def _read_json(p: Path) -> dict[str, Any] | None:
    return json.loads(p.read_text("utf-8")) if p.is_file() else None


def free_bytes(device: str) -> int:
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return 1 << 62


def bytes_needed(cfg: ModelConfig, dtype: torch.dtype, n_ctx: int) -> int:
    """Weights at load dtype (quantization happens after loading, so this is the peak) plus the
    KV cache plus 10% for activations and the allocator."""
    el = torch.empty((), dtype=dtype).element_size()
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * n_ctx * el
    return int((cfg.num_parameters() * el + kv) * 1.1)


def check_memory(name: str, cfg: ModelConfig, dtype: torch.dtype, n_ctx: int, device: str,
                 free: int | None = None) -> None:
    need = bytes_needed(cfg, dtype, n_ctx)
    have = free_bytes(device) if free is None else free
    if need > have:
        raise OutOfMemoryError(f"{name} ({str(dtype).removeprefix('torch.')}, n_ctx={n_ctx}, "
                               f"on {device})", need, have)


def open_safetensors(path: Path) -> Any:
    """A safetensors file opened lazily (use as a context manager); unreadable → ModelFileError."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types
        raise ModelFileError(path, f"cannot read safetensors ({e})") from e


def _our_name(hf: str) -> str:
    return hf.removeprefix("model.")


def load_state(files: list[Path], cfg: ModelConfig, dtype: torch.dtype, device: str,
               gptq: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """Every tensor under our names, in dtype, on device; experts stacked; GPTQ dequantized."""
    state: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    gptq_parts: dict[str, dict[str, torch.Tensor]] = {}
    for path in files:
        with open_safetensors(path) as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                name = _our_name(key)
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                t = f.get_tensor(key)
                suffix = name.rsplit(".", 1)[-1]
                if gptq and suffix in ("qweight", "qzeros", "scales", "g_idx"):
                    gptq_parts.setdefault(name.rsplit(".", 1)[0], {})[suffix] = t
                    continue
                m = _EXPERT.match(name)
                if m and m.group(3) in _EXPERT_SLOT:
                    slot = _EXPERT_SLOT[m.group(3)]
                    experts.setdefault((int(m.group(1)), slot), {})[int(m.group(2))] = t
                    continue
                state[name] = t.to(device=device, dtype=dtype)
    for prefix, parts in gptq_parts.items():
        w = gptq_dequantize(parts["qweight"], parts["qzeros"], parts["scales"], parts.get("g_idx"),
                            bits=int(gptq.get("bits", 4)) if gptq else 4,
                            zero_offset=0 if gptq and gptq.get("checkpoint_format") == "gptq_v2"
                            else 1)
        state[prefix + ".weight"] = w.to(device=device, dtype=dtype)
    for (layer, slot), by_e in experts.items():
        stacked = torch.stack([by_e[e] for e in range(len(by_e))])
        state[f"layers.{layer}.mlp.{slot}"] = stacked.to(device=device, dtype=dtype)
    return state


def load_model(folder: str | Path, device: str = "cpu", dtype: str | torch.dtype | None = None,
               n_ctx: int = 4096, check: bool = True) -> tuple[MiniCPM, Plan]:
    folder = Path(folder)
    p = plan(folder)
    dt = resolve_dtype(dtype, device)
    if check:
        check_memory(folder.name, p.config, dt, n_ctx, device)
    with torch.device("meta"):
        model = MiniCPM(p.config)
    state = load_state(p.files, p.config, dt, device, p.gptq)
    if p.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    expected = set(shapes)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing:
        raise ModelFileError(folder, f"weights missing from the checkpoint: {missing[:5]}"
                                     f"{' …' if len(missing) > 5 else ''}")
    if unexpected:
        log.warning("ignoring %d unexpected tensors, e.g. %s", len(unexpected), unexpected[:3])
        for k in unexpected:
            state.pop(k)
    for k, t in state.items():
        want = shapes[k]
        if t.shape != want:
            raise ModelFileError(folder, f"{k} has shape {tuple(t.shape)}, config implies "
                                         f"{tuple(want)}")
    model.load_state_dict(state, assign=True)
    model.requires_grad_(False)
    return model.eval(), p
