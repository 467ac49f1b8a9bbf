"""The server lists models other tools downloaded (and loose files in its models folder) under
names that /minicpm/models/load accepts: the sidebar's picker sends exactly those names."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


def _tiny(path: Path) -> Path:
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf

    cfg = preset("dense_tied")
    return write_gguf(cfg, random_weights(cfg, 0), path, name="MiniCPM tiny")


def _ollama_model(root: Path, name: str, blob_src: Path) -> Path:
    data = blob_src.read_bytes()
    hexd = hashlib.sha256(data).hexdigest()
    blob = root / "blobs" / f"sha256-{hexd}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    m = root / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                         "digest": f"sha256:{hexd}"}]}))
    return blob


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: Any) -> dict[str, Path]:
    for var in ("OLLAMA_MODELS", "LLAMA_CACHE", "HF_HUB_CACHE", "XDG_CACHE_HOME", "MINICPM_DISCOVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "models"
    loose = _tiny(folder / "my-finetune.gguf")
    blob = _ollama_model(tmp_path / "home" / ".ollama" / "models", "minicpm-tiny", loose)
    return {"loose": loose, "blob": blob}


@pytest.fixture
def minicpm_config(tmp_path: Path) -> dict[str, Any]:
    return {"load_on_start": False, "model_dirs": [str(tmp_path / "models")], "n_ctx": 256}


async def _ready(jp_fetch: Any, path: Path) -> dict[str, Any]:
    """The status once that file answers (the previous model serves while the next loads)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = json.loads((await jp_fetch("minicpm", "status")).body)
        if s["state"] == "error" or (s["state"] == "ready" and s["model"]["path"] == str(path)):
            return s
        await asyncio.sleep(0.05)
    raise AssertionError("no model after 60 s")


async def test_every_listed_name_loads(jp_fetch: Any, stores: dict[str, Path]) -> None:
    rows = json.loads((await jp_fetch("minicpm", "models")).body)["models"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["my-finetune"]["source"] == "models folder"
    assert by_name["ollama:minicpm-tiny:latest"]["label"] == "minicpm-tiny:latest"
    assert by_name["ollama:minicpm-tiny:latest"]["minicpm"]
    for name, path in (("my-finetune", stores["loose"]), ("ollama:minicpm-tiny:latest", stores["blob"])):
        r = await jp_fetch("minicpm", "models", "load", method="POST", body=json.dumps({"model": name}))
        assert r.code == 202
        s = await _ready(jp_fetch, path)  # in place: the store's own file
        assert s["state"] == "ready", s


async def test_unknown_name_is_still_a_404(jp_fetch: Any, stores: dict[str, Path]) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("minicpm", "models", "load", method="POST",
                       body=json.dumps({"model": "ollama:nothing:latest"}))
    assert e.value.code == 404


class TestConfiguredStoreModel:
    """c.MiniCPM.model may name another tool's model: it loads at start, from its store."""

    @pytest.fixture
    def minicpm_config(self, stores: dict[str, Path]) -> dict[str, Any]:
        return {"model": "ollama:minicpm-tiny:latest", "load_on_start": True, "n_ctx": 256}

    async def test_starts_with_it(self, jp_fetch: Any, stores: dict[str, Path]) -> None:
        s = await _ready(jp_fetch, stores["blob"])
        assert s["state"] == "ready", s
