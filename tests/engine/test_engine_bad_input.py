"""Bad model input gets a typed error naming the file and the reason, before llama.cpp runs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minicpm
from minicpm.catalogue import standin_path
from minicpm.gguf_check import read_gguf


def write_gguf(path, arch="llama", n=4096):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_tensor("token_embd.weight", np.ones((16, n // 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_missing_path(tmp_path):
    with pytest.raises(minicpm.ModelFileError) as e:
        minicpm.load(tmp_path / "nope.gguf")
    assert "nope.gguf" in str(e.value) and "no such file" in str(e.value)


def test_not_a_gguf(tmp_path):
    p = tmp_path / "model.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(minicpm.ModelFileError) as e:
        minicpm.load(p)
    assert "not a GGUF file" in str(e.value) and str(p) in str(e.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(minicpm.ModelFileError, match="not a GGUF file"):
        minicpm.load(p)


def test_truncated_tensor_data(tmp_path):
    p = write_gguf(tmp_path / "t.gguf")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 4000])
    with pytest.raises(minicpm.ModelFileError, match="truncated GGUF") as e:
        read_gguf(p)
    assert "token_embd.weight" in str(e.value)


def test_truncated_header(tmp_path):
    p = write_gguf(tmp_path / "t.gguf")
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(minicpm.ModelFileError, match="truncated GGUF"):
        minicpm.load(p)


def test_truncated_real_model_is_refused_without_crashing(tmp_path):
    src = standin_path()
    p = tmp_path / "smol-partial.gguf"
    with open(src, "rb") as f, open(p, "wb") as out:
        out.write(f.read(src.stat().st_size // 2))
    with pytest.raises(minicpm.ModelFileError, match="incomplete download"):
        minicpm.load(p)


def test_unsupported_architecture(tmp_path):
    p = write_gguf(tmp_path / "bert.gguf", arch="bert")
    with pytest.raises(minicpm.UnsupportedModelError, match="unsupported architecture 'bert'"):
        minicpm.load(p)


def test_vision_projector_alone_is_explained(tmp_path):
    p = write_gguf(tmp_path / "mmproj.gguf", arch="clip")
    with pytest.raises(minicpm.UnsupportedModelError, match="vision projector"):
        minicpm.load(p)


def test_hf_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MiniCPMForCausalLM"]}))
    with pytest.raises(minicpm.ModelFileError, match="no weights"):
        minicpm.load(tmp_path)


def test_folder_with_nothing(tmp_path):
    with pytest.raises(minicpm.ModelFileError, match="no config.json"):
        minicpm.load(tmp_path)


def test_unknown_catalogue_name():
    with pytest.raises(minicpm.ModelNotFoundError, match="unknown model"):
        minicpm.load("MiniCPM-9000")


def test_catalogue_model_not_downloaded_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICPM_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(minicpm.ModelNotFoundError, match="minicpm download MiniCPM-1B-sft-bf16"):
        minicpm.load("MiniCPM-1B-sft-bf16")


@pytest.mark.parametrize("args,needle", [
    (["generate", "--model", "/nonexistent/x.gguf", "--prompt", "hi"], "no such file"),
    (["generate", "--model", "MiniCPM-9000", "--prompt", "hi"], "unknown model"),
])
def test_cli_exits_nonzero_with_a_clear_message(args, needle):
    r = subprocess.run([sys.executable, "-m", "minicpm", *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert needle in r.stderr
    assert r.stdout == ""


def test_cli_truncated_file(tmp_path):
    p = write_gguf(tmp_path / "t.gguf")
    p.write_bytes(p.read_bytes()[:-100])
    r = subprocess.run([sys.executable, "-m", "minicpm", "generate", "--model", str(p), "--prompt",
                        "hi"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "truncated" in r.stderr and "Traceback" not in r.stderr


def test_mmproj_is_not_picked_as_the_model(tmp_path):
    shutil.copy(standin_path(), tmp_path / "model.gguf")
    write_gguf(tmp_path / "mmproj-model-f16.gguf", arch="clip")
    from minicpm.catalogue import resolve

    resolved = resolve(tmp_path)
    assert resolved.path.name == "model.gguf"
    assert resolved.mmproj is not None and resolved.mmproj.name.startswith("mmproj")
