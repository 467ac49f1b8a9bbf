"""Models other tools downloaded (Ollama, LM Studio, HF cache, llama.cpp's cache): listed under
their own names, loaded in place, and nothing outside a store is followed."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

import minicpm
from minicpm import discovery, gguf_head
from minicpm.catalogue import list_models, resolve


def _header_only(path: Path, arch: str, **kv) -> Path:
    """A GGUF with metadata and no tensors: enough for the header reader (never loaded)."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(kv.pop("name", arch))
    for k, v in kv.items():
        w.add_uint32(k, v) if isinstance(v, int) else w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _blob(root: Path, src: Path) -> str:
    data = src.read_bytes()
    hexd = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{hexd}").write_bytes(data)
    return f"sha256:{hexd}"


def _manifest(root: Path, rel: str, layers: list[tuple[str, str]]) -> None:
    p = root / "manifests" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({
        "schemaVersion": 2, "config": {"digest": "sha256:" + "0" * 64},
        "layers": [{"mediaType": f"application/vnd.ollama.image.{t}", "digest": d, "size": 1}
                   for t, d in layers]}))


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    """A HOME holding an Ollama store and an LM Studio folder, and a file outside both."""
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf, write_minicpm5_gguf

    home = tmp_path / "home"
    for var in ("OLLAMA_MODELS", "LLAMA_CACHE", "HF_HUB_CACHE", "XDG_CACHE_HOME", "MINICPM_MODELS",
                "MINICPM_DISCOVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MINICPM_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src"
    cfg = preset("dense_tied")
    mini = write_gguf(cfg, random_weights(cfg, 0), src / "tiny-minicpm.gguf", name="MiniCPM tiny")
    m5 = write_minicpm5_gguf(src / "MiniCPM5-tiny.gguf")
    llama_cfg = preset("dense_tied", architecture="llama", tie_word_embeddings=False)
    other = write_gguf(llama_cfg, random_weights(llama_cfg, 1), src / "other.gguf", name="Qwen tiny")
    proj = _header_only(src / "proj.gguf", "clip", **{"clip.projector_type": "resampler"})
    embed = _header_only(src / "embed.gguf", "nomic-bert", name="nomic-embed-text")
    outside = tmp_path / "outside"
    secret = shutil.copy(mini, outside / "secret.gguf") if outside.mkdir() is None else None

    ollama = home / ".ollama" / "models"
    m = _blob(ollama, mini)
    _manifest(ollama, "registry.ollama.ai/library/minicpm-v/latest",
              [("model", m), ("projector", _blob(ollama, proj)), ("template", _blob(ollama, embed))])
    _manifest(ollama, "registry.ollama.ai/library/nomic-embed-text/latest", [("model", _blob(ollama, embed))])
    _manifest(ollama, "registry.ollama.ai/library/qwen-tiny/1b", [("model", _blob(ollama, other))])
    _manifest(ollama, "hf.co/openbmb/MiniCPM5-1B-GGUF/Q4_K_M", [("model", _blob(ollama, m5))])
    _manifest(ollama, "registry.ollama.ai/library/gone/latest", [("model", "sha256:" + "a" * 64)])
    _manifest(ollama, "registry.ollama.ai/library/sneaky/latest", [("model", "sha256:../../../outside")])
    evil = "b" * 64  # a blob that is a symlink to a file outside the store
    os.symlink(secret, ollama / "blobs" / f"sha256-{evil}")
    _manifest(ollama, "registry.ollama.ai/library/evil/latest", [("model", f"sha256:{evil}")])
    (outside / "manifests").mkdir()  # a symlinked manifest folder leading outside
    _manifest(outside, "tag", [("model", m)])
    os.symlink(outside / "manifests", ollama / "manifests" / "registry.ollama.ai" / "linked")

    lms = home / ".lmstudio" / "models"
    shutil.copy(m5, (lms / "openbmb" / "MiniCPM5-1B-GGUF").mkdir(parents=True) or
                lms / "openbmb" / "MiniCPM5-1B-GGUF" / "MiniCPM5-1B-Q4_K_M.gguf")
    vl = lms / "someone" / "tiny-VL-GGUF"
    vl.mkdir(parents=True)
    shutil.copy(other, vl / "tiny-VL-Q8_0.gguf")
    shutil.copy(proj, vl / "mmproj-tiny-VL-f16.gguf")
    os.symlink(secret, vl / "escape.gguf")
    return {"home": home, "ollama": ollama, "lms": lms, "outside": outside, "blob": m}


def _rows():
    return {r["name"]: r for r in list_models() if r["source"] not in ("catalogue", "stand-in")}


def test_ollama_and_lm_studio_are_listed_by_their_own_names(laptop):
    rows = _rows()
    ollama, lms = laptop["ollama"], laptop["lms"]
    mv = rows["ollama:minicpm-v:latest"]
    assert mv["label"] == "minicpm-v:latest" and mv["source"] == "ollama" and mv["minicpm"]
    assert mv["chat"] and mv["vision"] and mv["mmproj"].startswith(str(ollama / "blobs"))
    assert mv["local_path"] == str(ollama / "blobs" / ("sha256-" + laptop["blob"][7:]))
    assert mv["size_bytes"] == Path(mv["local_path"]).stat().st_size
    assert rows["ollama:hf.co/openbmb/MiniCPM5-1B-GGUF:Q4_K_M"]["minicpm"]  # by its pre-tokenizer
    assert not rows["ollama:qwen-tiny:1b"]["minicpm"] and rows["ollama:qwen-tiny:1b"]["chat"]
    emb = rows["ollama:nomic-embed-text:latest"]
    assert not emb["chat"] and emb["kind"] == "embedding"
    m5 = rows["lmstudio:openbmb/MiniCPM5-1B-GGUF/MiniCPM5-1B-Q4_K_M.gguf"]
    assert m5["label"] == "MiniCPM5-1B-Q4_K_M.gguf" and m5["source"] == "lm studio" and m5["minicpm"]
    vl = rows["lmstudio:someone/tiny-VL-GGUF/tiny-VL-Q8_0.gguf"]
    assert vl["mmproj"] == str(lms / "someone" / "tiny-VL-GGUF" / "mmproj-tiny-VL-f16.gguf")
    assert not rows["lmstudio:someone/tiny-VL-GGUF/mmproj-tiny-VL-f16.gguf"]["chat"]
    # MiniCPM first, then the other chat models, then what cannot chat
    order = [r for r in rows.values()]
    keys = [(not r["minicpm"], not r["chat"]) for r in order]
    assert keys == sorted(keys)


def test_dangling_escaping_and_malformed_entries_are_skipped(laptop):
    names = set(_rows())
    assert not {n for n in names if any(w in n for w in ("gone", "sneaky", "evil", "linked",
                                                         "escape"))}
    roots = [os.path.realpath(laptop["ollama"]), os.path.realpath(laptop["lms"])]
    for r in _rows().values():
        for p in (r["local_path"], r["mmproj"]):
            assert p is None or any(os.path.realpath(p).startswith(root + os.sep) for root in roots)


def test_nothing_outside_a_store_is_read(laptop, monkeypatch):
    read = []
    real = gguf_head.read_head
    monkeypatch.setattr(gguf_head, "read_head", lambda p: read.append(str(p)) or real(p))
    gguf_head._cache.clear()
    list_models()
    assert read and not [p for p in read if os.path.realpath(p).startswith(str(laptop["outside"]))]
    read.clear()
    list_models()  # headers come from the cache the second time
    assert read == []


def test_listed_names_load_in_place(laptop):
    r = resolve("ollama:hf.co/openbmb/MiniCPM5-1B-GGUF:Q4_K_M")
    assert r.source == "ollama" and str(r.path).startswith(str(laptop["ollama"] / "blobs"))
    assert resolve("minicpm-v").path == resolve("ollama:minicpm-v:latest").path  # Ollama's :latest
    assert resolve("minicpm-v:latest").mmproj is not None
    with pytest.raises(minicpm.ModelFileError, match="not a chat model"):
        resolve("ollama:nomic-embed-text:latest")
    with pytest.raises(minicpm.ModelNotFoundError):
        resolve("ollama:gone:latest")
    engine = minicpm.load("lmstudio:openbmb/MiniCPM5-1B-GGUF/MiniCPM5-1B-Q4_K_M.gguf", n_ctx=128)
    try:
        assert engine.info.path == str(laptop["lms"] / "openbmb" / "MiniCPM5-1B-GGUF"
                                       / "MiniCPM5-1B-Q4_K_M.gguf")
        text = "".join(engine.complete("hello world", max_tokens=4, temperature=0))
        assert engine.complete  # generated without copying the file anywhere
        assert isinstance(text, str)
    finally:
        engine.close()
    assert not any(Path(os.environ["MINICPM_CACHE"]).glob("**/*.gguf")) if \
        Path(os.environ["MINICPM_CACHE"]).exists() else True


def test_default_model_prefers_a_discovered_minicpm_over_the_stand_in(laptop):
    r = resolve(None)
    assert not r.stand_in and r.source in ("ollama", "lm studio")


def test_store_environment_variables(laptop, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(laptop["ollama"], moved, symlinks=True)
    shutil.rmtree(laptop["home"] / ".ollama")
    monkeypatch.setenv("OLLAMA_MODELS", str(moved))
    assert resolve("ollama:minicpm-v:latest").path.parent == moved.resolve() / "blobs"
    monkeypatch.setenv("MINICPM_DISCOVER", "0")
    assert not [r for r in list_models() if r["source"] in ("ollama", "lm studio")]


def test_hf_and_llama_cpp_caches(laptop, tmp_path, monkeypatch):
    from minicpm.testing.gguf_writer import write_minicpm3_gguf

    hub = tmp_path / "hf" / "hub" / "models--openbmb--MiniCPM3-4B-GGUF"
    f = write_minicpm3_gguf(hub / "blobs" / "abc")
    (hub / "snapshots" / "rev1").mkdir(parents=True)
    os.symlink("../../blobs/abc", hub / "snapshots" / "rev1" / "tiny-minicpm3.gguf")
    cache = tmp_path / "llcache"
    cache.mkdir()
    shutil.copy(f, cache / "openbmb_MiniCPM3-4B-GGUF_tiny-minicpm3.gguf")
    monkeypatch.setenv("LLAMA_CACHE", str(cache))
    rows = _rows()
    hf = rows["hf:openbmb/MiniCPM3-4B-GGUF/tiny-minicpm3.gguf"]
    assert hf["source"] == "hf cache" and hf["minicpm"] and hf["architecture"] == "minicpm3"
    assert hf["local_path"] == str(f.resolve())
    assert rows["llama.cpp:openbmb_MiniCPM3-4B-GGUF_tiny-minicpm3.gguf"]["source"] == "llama.cpp cache"


def test_loose_gguf_in_the_models_folder_loads_by_its_listed_name(laptop, tiny_gguf):
    """Issue 21 item 4: the sidebar listed a loose file by its bare name; loading it said 404."""
    folder = Path(os.environ["MINICPM_CACHE"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_gguf().path, folder / "my-finetune.gguf")
    row = next(r for r in list_models() if r["name"] == "my-finetune")
    assert row["source"] == "models folder" and row["chat"]
    assert row["minicpm"]  # its header says arch minicpm
    other = folder / "minicpm" / "qwen-finetune.gguf"  # in a folder named minicpm: not MiniCPM
    other.parent.mkdir()
    shutil.copy(next(laptop["lms"].rglob("tiny-VL-Q8_0.gguf")), other)
    assert not next(r for r in list_models() if r["name"] == "qwen-finetune")["minicpm"]
    assert resolve("my-finetune").path == folder / "my-finetune.gguf"


def test_two_hundred_manifests_scan(laptop):
    """200 Ollama manifests over 200 distinct blobs: listed, and the second scan reads no header."""
    ollama = laptop["ollama"]
    data = (ollama / "blobs" / ("sha256-" + laptop["blob"][7:])).read_bytes()[:4096]
    for i in range(200):
        body = data + str(i).encode()
        hexd = hashlib.sha256(body).hexdigest()
        (ollama / "blobs" / f"sha256-{hexd}").write_bytes(body)
        _manifest(ollama, f"registry.ollama.ai/library/m{i:03d}/latest", [("model", f"sha256:{hexd}")])
    found = discovery.discover().found
    assert sum(f.name.startswith("ollama:m") for f in found) >= 200


def test_cli_lists_and_generates_with_a_store_model(laptop):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "minicpm", "models"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "ollama:minicpm-v:latest" in x)
    assert line.startswith("*") and "ollama" in line
    assert next(x for x in r.stdout.splitlines() if "nomic-embed-text" in x).startswith("-")
    r = subprocess.run([sys.executable, "-m", "minicpm", "generate", "--model",
                        "ollama:qwen-tiny:1b", "--raw", "--prompt", "hello", "--max-tokens", "3",
                        "--n-ctx", "128"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "model:" in r.stderr
