"""Model catalogue and discovery of local copies."""

import json
import os

import pytest

import minicpm
from minicpm.catalogue import CATALOGUE, list_models, resolve, standin_path

RELEASE = ["MiniCPM-2B-sft-bf16", "MiniCPM-2B-sft-fp32", "MiniCPM-2B-dpo-bf16", "MiniCPM-2B-dpo-fp32",
           "MiniCPM-2B-sft-int4", "MiniCPM-2B-dpo-int4", "MiniCPM-2B-sft-bf16-llama-format",
           "MiniCPM-2B-128k", "MiniCPM-1B-sft-bf16", "MiniCPM-MoE-8x2B", "MiniCPM-V", "MiniCPM-V-2",
           "MiniCPM-2B-dpo-fp16-gguf", "MiniCPM-2B-dpo-Q4_K_M", "MiniCPM-V-2_6-gguf"]


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICPM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("MINICPM_MODELS", raising=False)
    return tmp_path


def test_catalogue_covers_the_release():
    names = {e.name for e in CATALOGUE}
    assert set(RELEASE) <= names
    for e in CATALOGUE:
        assert e.hub_id.count("/") == 1 and e.size_bytes > 0 and e.backends
        assert e.format in ("hf", "gguf")
        assert (e.filename is not None) == (e.format == "gguf")
    assert next(e for e in CATALOGUE if e.name == "MiniCPM-V-2_6-gguf").mmproj


def test_nothing_local_means_the_stand_in(empty_env):
    r = resolve(None)
    assert r.stand_in and r.path == standin_path()
    rows = list_models()
    assert not any(r["available"] for r in rows if not r["stand_in"])
    assert [r for r in rows if r["stand_in"]][0]["available"]


def _link_gguf(dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(standin_path(), dest)
    return dest


def test_found_in_the_hugging_face_cache(empty_env):
    snap = empty_env / "hf" / "hub" / "models--runfuture--MiniCPM-2B-dpo-q4km-gguf" / "snapshots" / "abc"
    f = _link_gguf(snap / "MiniCPM-2B-dpo-q4km-gguf.gguf")
    r = resolve("MiniCPM-2B-dpo-Q4_K_M")
    assert r.path == f and r.entry.name == "MiniCPM-2B-dpo-Q4_K_M" and not r.stand_in
    assert resolve(None).path == f  # a local MiniCPM beats the stand-in
    row = next(x for x in list_models() if x["name"] == "MiniCPM-2B-dpo-Q4_K_M")
    assert row["available"] and row["local_path"] == str(f)


def test_found_in_minicpm_cache_and_extra_dirs(empty_env, monkeypatch):
    extra = empty_env / "models"
    f = _link_gguf(extra / "MiniCPM-2B-dpo-fp16-gguf" / "ggml-model-f16.gguf")
    with pytest.raises(minicpm.ModelNotFoundError):
        resolve("MiniCPM-2B-dpo-fp16-gguf")
    assert resolve("MiniCPM-2B-dpo-fp16-gguf", model_dirs=[extra]).path == f
    monkeypatch.setenv("MINICPM_MODELS", str(extra))
    assert resolve("MiniCPM-2B-dpo-fp16-gguf").path == f


def test_hf_folder_by_name(empty_env):
    folder = empty_env / "cache" / "MiniCPM-1B-sft-bf16"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["MiniCPMForCausalLM"]}))
    r = resolve("MiniCPM-1B-sft-bf16")
    assert r.format == "hf" and r.path == folder


def test_loose_gguf_is_listed_and_loads(empty_env):
    f = _link_gguf(empty_env / "cache" / "my-minicpm-finetune.gguf")
    row = next(x for x in list_models() if x["name"] == "my-minicpm-finetune")
    assert row["available"] and row["local_path"] == str(f)
    assert resolve(None).path == f
    engine = minicpm.load(str(f), n_ctx=256)
    assert engine.info.model == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # general.name from the file
    assert not engine.info.stand_in
    engine.close()
