"""GGUF models other tools already downloaded: Ollama, LM Studio, the Hugging Face cache and
llama.cpp's cache. Found by reading their folders (no running service needed), loaded in place.

Safety: a file is used only when, symlinks resolved, it lies inside its store; Ollama digests must
be 64 hex digits. Speed: only the head of each model file is read (its GGUF metadata up to the
vocabulary), cached by (path, mtime, size); Ollama's other blobs are never opened."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gguf_head import classify, head, is_minicpm

OLLAMA, LMSTUDIO, HFCACHE, LLAMACPP, FOLDER = (
    "ollama", "lm studio", "hf cache", "llama.cpp cache", "models folder")
PREFIX = {OLLAMA: "ollama:", LMSTUDIO: "lmstudio:", HFCACHE: "hf:", LLAMACPP: "llama.cpp:", FOLDER: ""}
SOURCE_ORDER = (FOLDER, OLLAMA, LMSTUDIO, HFCACHE, LLAMACPP)

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"
_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_MAX_ENTRIES = 20000  # per store walk: a pathological tree stops here
KIND_TEXT = {"embedding": "an embedding model", "projector": "a vision projector alone",
             "adapter": "a LoRA adapter", "unreadable": "not a readable GGUF file",
             "unsupported": "an architecture this llama.cpp backend does not run"}


@dataclass
class Found:
    """One model file in a store."""

    source: str
    name: str  # what load() accepts: "ollama:minicpm-v:latest", "lmstudio:pub/repo/f.gguf"
    label: str  # what people call it: Ollama's name:tag, the file name
    path: Path  # the real file, inside its store
    size: int
    arch: str | None = None
    kind: str = "chat"  # chat | embedding | projector | adapter | unsupported | unreadable
    minicpm: bool = False
    mmproj: Path | None = None
    context_length: int | None = None
    where: str = ""  # the repo or folder it belongs to, for display

    @property
    def chat(self) -> bool:
        return self.kind == "chat"

    def row(self) -> dict[str, Any]:
        """The shape of catalogue.list_models rows."""
        what = "" if self.chat else f"not offered for chat: {KIND_TEXT.get(self.kind, self.kind)}"
        return {"name": self.name, "label": self.label, "source": self.source, "hub_id": None,
                "format": "gguf", "size_bytes": self.size, "backends": ("llama.cpp",),
                "template": "file", "vision": self.mmproj is not None, "local_path": str(self.path),
                "mmproj": str(self.mmproj) if self.mmproj else None, "available": True,
                "stand_in": False, "minicpm": self.minicpm, "chat": self.chat, "kind": self.kind,
                "architecture": self.arch, "context_length": self.context_length,
                "where": self.where, "notes": what or f"{self.source}, loaded in place"}


@dataclass(frozen=True)
class Store:
    source: str
    root: Path


# --- where the stores are ------------------------------------------------------------------
def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or _home() / ".cache")


def hf_hub_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's rules)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME") or _cache_home() / "huggingface").expanduser() / "hub"


def stores() -> list[Store]:
    """Every store folder that exists. MINICPM_DISCOVER=0 turns discovery off."""
    if os.environ.get("MINICPM_DISCOVER", "1").strip().lower() in ("0", "no", "off", "false"):
        return []
    home = _home()
    out: list[Store] = []
    if os.environ.get("OLLAMA_MODELS"):
        out.append(Store(OLLAMA, Path(os.environ["OLLAMA_MODELS"]).expanduser()))
    else:
        out.append(Store(OLLAMA, home / ".ollama" / "models"))
        if sys.platform.startswith("linux"):  # the Linux installer's service user
            out.append(Store(OLLAMA, Path("/usr/share/ollama/.ollama/models")))
    # LM Studio has no environment variable; its CLI records a moved home in this pointer file.
    pointer = _read_small(home / ".lmstudio-home-pointer")
    if pointer:
        out.append(Store(LMSTUDIO, Path(pointer).expanduser() / "models"))
    out += [Store(LMSTUDIO, home / ".lmstudio" / "models"),
            Store(LMSTUDIO, home / ".cache" / "lm-studio" / "models"),
            Store(HFCACHE, hf_hub_dir())]
    if os.environ.get("LLAMA_CACHE"):
        out.append(Store(LLAMACPP, Path(os.environ["LLAMA_CACHE"]).expanduser()))
    elif sys.platform == "darwin":
        out.append(Store(LLAMACPP, home / "Library" / "Caches" / "llama.cpp"))
    else:
        out.append(Store(LLAMACPP, _cache_home() / "llama.cpp"))
    seen: set[str] = set()
    result = []
    for s in out:
        real = os.path.realpath(s.root)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            result.append(s)
    return result


def _read_small(p: Path, limit: int = 4096) -> str:
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read(limit).strip()
    except OSError:
        return ""


def _make(source: str, name: str, label: str, path: Path, st: os.stat_result, where: str = "",
          mmproj: Path | None = None, size: int | None = None) -> Found:
    meta = head(path, st)
    arch, kind = classify(meta)
    ctx = meta.get(f"{arch}.context_length") if arch else None
    return Found(source, name, label, path, st.st_size if size is None else size, arch, kind,
                 # a models folder's path (~/.cache/minicpm) says nothing about the file
                 is_minicpm(meta, label, "" if source == FOLDER else where), mmproj,
                 int(ctx) if isinstance(ctx, int) else None, where)


# --- walking the stores ----------------------------------------------------------------------
def _inside(p: str | Path, root_real: str) -> Path | None:
    """p with symlinks resolved, if that is root_real or below it; else None."""
    real = os.path.realpath(p)
    if real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep):
        return Path(real)
    return None


def _walk(top: str, depth: int) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """(path, parts relative to top, is a symlink) of the non-folders up to ``depth`` levels
    below top. Symlinked folders are not entered (a link could lead out of the store), so an
    entry that is not itself a link lies inside top; links are checked by ``_checked``."""
    budget = [_MAX_ENTRIES]

    def rec(d: str, parts: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...], bool]]:
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            budget[0] -= 1
            if budget[0] < 0 or e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                if len(parts) + 1 < depth:
                    yield from rec(e.path, (*parts, e.name))
            else:
                yield e.path, (*parts, e.name), e.is_symlink()

    yield from rec(top, ())


def _checked(path: str, is_link: bool, root_real: str) -> tuple[str, os.stat_result] | None:
    """A regular file inside the store: (its real path, its stat), else None."""
    if is_link:
        real = _inside(path, root_real)
        if real is None:
            return None
        path = str(real)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st) if stat.S_ISREG(st.st_mode) else None


def _subdir(root_real: str, name: str) -> str | None:
    """root/name as a real folder inside the store (it may be a link within it)."""
    real = _inside(os.path.join(root_real, name), root_real)
    return str(real) if real is not None and real.is_dir() else None


def _ollama_blob(blobs: str, root_real: str, digest: Any) -> tuple[str, os.stat_result] | None:
    m = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        return None
    p = os.path.join(blobs, f"sha256-{m.group(1)}")
    try:
        lst = os.lstat(p)
    except OSError:
        return None  # a dangling manifest: its blob was deleted
    if stat.S_ISLNK(lst.st_mode):
        return _checked(p, True, root_real)
    return (p, lst) if stat.S_ISREG(lst.st_mode) else None


_manifests: dict[tuple[str, int, int], tuple[Any, Any]] = {}


def _manifest_layers(path: str, st: os.stat_result) -> tuple[Any, Any]:
    """(model digest, projector digest) of a manifest, cached by (path, mtime, size)."""
    key = (path, st.st_mtime_ns, st.st_size)
    hit = _manifests.get(key)
    if hit is None:
        try:
            with open(path, "rb") as f:
                layers = json.loads(f.read(1 << 20))["layers"]
            digests = {lay.get("mediaType"): lay.get("digest") for lay in layers
                       if isinstance(lay, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            digests = {}
        hit = (digests.get(OLLAMA_MODEL), digests.get(OLLAMA_PROJECTOR))
        if len(_manifests) > 4096:
            _manifests.clear()
        _manifests[key] = hit
    return hit


def scan_ollama(root: Path) -> Iterator[Found]:
    """manifests/<host>/<namespace>/<model>/<tag> (JSON) → blobs/sha256-<hex>."""
    root_real = os.path.realpath(root)
    manifests, blobs = _subdir(root_real, "manifests"), _subdir(root_real, "blobs")
    if manifests is None or blobs is None:
        return
    for path, parts, link in _walk(manifests, 4):
        checked = _checked(path, link, root_real) if len(parts) == 4 else None
        if checked is None:
            continue
        model, projector = _manifest_layers(*checked)
        blob = _ollama_blob(blobs, root_real, model)
        if blob is None:  # no model layer, or its blob is gone (a dangling manifest)
            continue
        proj = _ollama_blob(blobs, root_real, projector)
        host, ns, name, tag = parts
        label = f"{name}:{tag}" if (host, ns) == ("registry.ollama.ai", "library") else \
            f"{ns}/{name}:{tag}" if host == "registry.ollama.ai" else f"{host}/{ns}/{name}:{tag}"
        yield _make(OLLAMA, PREFIX[OLLAMA] + label, label, Path(blob[0]), blob[1],
                    where="ollama", mmproj=Path(proj[0]) if proj else None)


def _scan_files(source: str, root: Path,
                files: Iterable[tuple[str, tuple[str, ...], bool]]) -> Iterator[Found]:
    """GGUF files laid out in folders (LM Studio, HF snapshots, llama.cpp's cache): projectors
    beside a model are paired with it; only the first shard of a split model is listed."""
    root_real = os.path.realpath(root)
    by_dir: dict[str, list[tuple[str, Path, tuple[str, ...], os.stat_result]]] = {}
    for p, parts, link in files:
        if not p.lower().endswith(".gguf"):
            continue
        checked = _checked(p, link, root_real)
        if checked is not None:
            by_dir.setdefault(os.path.dirname(p), []).append(
                (os.path.basename(p), Path(checked[0]), parts, checked[1]))
    for _d, items in sorted(by_dir.items()):
        projs = [real for name, real, _parts, st in items if name.lower().startswith("mmproj")
                 or classify(head(real, st))[1] == "projector"]
        for name, real, parts, st in items:
            shard = _SHARD.search(name)
            if shard and shard.group(1) != "00001":
                continue
            size = sum(s.st_size for q, _r, _p, s in items if q[:shard.start()] == name[:shard.start()]
                       and _SHARD.search(q)) if shard else None
            f = _make(source, PREFIX[source] + "/".join(parts), name, real, st,
                      where="/".join(parts[:-1]), size=size)
            if real not in projs and f.chat and projs:
                f.mmproj = projs[0]
            yield f


def scan_lmstudio(root: Path) -> Iterator[Found]:
    """<publisher>/<repo>/*.gguf."""
    top = _subdir(os.path.realpath(root), ".")
    if top is not None:
        yield from _scan_files(LMSTUDIO, root, _walk(top, 3))


def _hf_files(root: Path) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """models--org--repo/snapshots/<rev>/… → (file, ("org/repo", …)); newest snapshot wins."""
    top = os.path.realpath(root)
    try:
        with os.scandir(top) as it:
            repos = sorted((e.name, e.path) for e in it if e.name.startswith("models--")
                           and e.is_dir(follow_symlinks=False))
    except OSError:
        return
    for name, path in repos:
        repo_id = name[len("models--"):].replace("--", "/")
        try:
            with os.scandir(os.path.join(path, "snapshots")) as it:
                snaps = sorted((e for e in it if e.is_dir(follow_symlinks=False)),
                               key=lambda e: e.stat(follow_symlinks=False).st_mtime, reverse=True)
        except OSError:
            continue
        seen: set[tuple[str, ...]] = set()
        for snap in snaps:
            for p, parts, link in _walk(snap.path, 2):
                if parts not in seen:
                    seen.add(parts)
                    yield p, (repo_id, *parts), link


def scan_hf(root: Path, source: str = HFCACHE) -> Iterator[Found]:
    yield from _scan_files(source, root, _hf_files(root))


def scan_llamacpp(root: Path) -> Iterator[Found]:
    """llama.cpp's -hf downloads: files named <org>_<repo>_<file>.gguf, or (newer builds) the
    Hugging Face cache layout."""
    top = _subdir(os.path.realpath(root), ".")
    if top is not None:
        yield from _scan_files(LLAMACPP, root, _walk(top, 2))
        yield from scan_hf(root, LLAMACPP)


def _stat_file(p: Path) -> os.stat_result | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def scan_folder(root: Path) -> Iterator[Found]:
    """A user's own models folder (MINICPM_MODELS, ~/.cache/minicpm): bare file stems as names,
    and symlinks may point anywhere (the user put them there)."""
    files = []
    try:
        for p in sorted(root.rglob("*.gguf")):
            st = _stat_file(p)
            if st is not None:
                files.append((p, st))
    except OSError:
        return
    for p, st in files:
        f = _make(FOLDER, p.stem, p.stem, p, st, where=str(p.parent))
        if f.chat and "mmproj" not in p.name.lower():
            mm = sorted(p.parent.glob("mmproj*.gguf"))
            f.mmproj = mm[0] if mm else None
        elif "mmproj" in p.name.lower():
            f.kind = "projector"
        yield f


_SCANNERS = {OLLAMA: scan_ollama, LMSTUDIO: scan_lmstudio, HFCACHE: scan_hf, LLAMACPP: scan_llamacpp}


@dataclass
class Discovery:
    found: list[Found] = field(default_factory=list)
    scanned: list[Store] = field(default_factory=list)


def discover(folders: Iterable[Path] = (), store_list: list[Store] | None = None) -> Discovery:
    """Every GGUF in the stores (and the given models folders), MiniCPM first, chat models before
    the rest. A store that cannot be read is skipped."""
    out = Discovery(scanned=stores() if store_list is None else store_list)
    for d in folders:
        if d.is_dir():
            out.found += scan_folder(d)
    for s in out.scanned:
        try:
            out.found += _SCANNERS[s.source](s.root)
        except OSError:
            continue
    out.found.sort(key=lambda f: (not f.minicpm, not f.chat, SOURCE_ORDER.index(f.source),
                                  f.label.lower()))
    return out


def lookup(text: str, found: list[Found]) -> list[Found]:
    """Entries a name refers to: the exact loadable name, else the readable label (Ollama's
    "minicpm-v" meaning "minicpm-v:latest", as in Ollama). Several means ambiguous."""
    t = text.strip().lower()
    exact = [f for f in found if f.name.lower() == t]
    if exact:
        return exact[:1]
    by_label = [f for f in found if f.label.lower() == t
                or (f.source == OLLAMA and ":" not in t and f.label.lower() == t + ":latest")]
    chat = [f for f in by_label if f.chat] or by_label
    return list({f.path: f for f in chat}.values())
