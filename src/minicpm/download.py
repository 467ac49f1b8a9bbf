"""`minicpm download NAME`: fetch a catalogue model through huggingface_hub, or say where to put it."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .catalogue import BY_NAME, CATALOGUE, ResolvedModel, default_dirs
from .errors import DownloadError, ModelNotFoundError


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """None when the hub answers a TCP connect, else the reason. Checked first so that an
    offline laptop gets an answer in seconds rather than after huggingface_hub's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (
        443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot reach {host}:{port} ({e.strerror or e})"


def download(name: str, target_dir: str | Path | None = None) -> ResolvedModel:
    entry = BY_NAME.get(name.lower())
    if entry is None:
        raise ModelNotFoundError(
            f"unknown model {name!r}; one of: {', '.join(e.name for e in CATALOGUE)}")
    dest = Path(target_dir).expanduser() if target_dir else default_dirs()[-1] / entry.name
    files = [entry.filename] + ([entry.mmproj] if entry.mmproj else []) if entry.filename else None
    where = f"{entry.hub_id}/{entry.filename}" if entry.filename else entry.hub_id
    manual = (f"To install by hand, copy {where}"
              f"{' and ' + entry.mmproj if entry.mmproj else ''} into {dest}")
    why = _hub_reachable()
    if why:
        raise DownloadError(f"cannot download {entry.name}: {why}. {manual}")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id=entry.hub_id, local_dir=str(dest), allow_patterns=files)
    except Exception as e:  # huggingface_hub raises many types; all mean the same to a user
        raise DownloadError(f"download of {entry.name} failed: {e}. {manual}") from e
    path = dest / entry.filename if entry.filename else dest
    mm = dest / entry.mmproj if entry.mmproj else None
    return ResolvedModel(path, entry.format, entry.name, entry, mmproj=mm)
