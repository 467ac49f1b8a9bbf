"""Loading HF folders: shards, dtypes, both tokenizer kinds, GPTQ, errors, memory refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_testlib import make_config, random_weights, reference_logits, write_folder

from minicpm.errors import ModelFileError, OutOfMemoryError, UnsupportedModelError
from minicpm.torch import loader
from minicpm.torch.quantize import gptq_dequantize
from minicpm.torch.tokenizer import Tokenizer

TOKENS = [1, 9, 4, 22, 13, 5]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_sharded_safetensors_in_each_dtype(tiny, dtype: str) -> None:
    folder, cfg, wts = tiny("gqa", shards=3, dtype=dtype)
    assert (folder / "model.safetensors.index.json").is_file()
    model, p = loader.load_model(folder, dtype="float32")
    assert len(p.files) == 3
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    ref = reference_logits(cfg, wts, TOKENS)
    tol = 1e-4 if dtype == "float32" else 3e-2  # the file itself was rounded
    assert np.abs(got - ref).max() / np.abs(ref).max() < tol


def test_tokenizer_json(tiny) -> None:
    folder, _, _ = tiny("dense", tokenizer="json")
    tok = Tokenizer(folder)
    ids = tok.encode("<用户>hello world<AI>", add_bos=True)
    assert ids[0] == 1 and ids[1] == 3 and ids[-1] == 4
    assert tok.eos_ids == [2] and tok.token_bytes(2) == b""
    assert tok.token_bytes(ids[2]) == b"hello"


def test_sentencepiece_tokenizer_model(tmp_path) -> None:
    cfg = make_config("dense", vocab_size=400)
    folder = write_folder(tmp_path / "spm", cfg, random_weights(cfg), tokenizer="spm")
    tok = Tokenizer(folder)
    assert tok.kind == "tokenizer.model"
    text = "<用户>hello cat 你好<AI>"
    ids = tok.encode(text, add_bos=True)
    assert ids[0] == tok.bos_id == 1
    pieces = [tok.piece(i) for i in ids]
    assert "<用户>" in pieces and "<AI>" in pieces  # user-defined pieces stay whole
    # byte-fallback pieces join back into UTF-8 (你好 may be bytes or whole pieces)
    assert tok.decode(ids[1:]).strip() == text


def test_untied_checkpoint_without_tie_key_uses_its_head(tmp_path) -> None:
    cfg = make_config("untied")
    del cfg["tie_word_embeddings"]
    wts = random_weights({**cfg, "tie_word_embeddings": False})
    folder = write_folder(tmp_path / "m", cfg, wts)
    model, _ = loader.load_model(folder)
    assert model.lm_head is not None


def test_gptq_unpacking_matches_known_ints() -> None:
    """Pack a known int4 matrix the AutoGPTQ way and get W = (q - z) * s back exactly."""
    rng = np.random.default_rng(0)
    n_in, n_out, group = 64, 16, 32
    q = rng.integers(0, 16, size=(n_in, n_out))
    z = rng.integers(1, 16, size=(n_in // group, n_out))
    s = rng.random((n_in // group, n_out)).astype(np.float32)
    qweight = np.zeros((n_in // 8, n_out), dtype=np.int64)
    for j in range(8):
        qweight |= q[j::8] << (4 * j)
    zs = z - 1  # v1 format stores zero - 1
    qzeros = np.zeros((n_in // group, n_out // 8), dtype=np.int64)
    for j in range(8):
        qzeros |= zs[:, j::8] << (4 * j)
    as_i32 = lambda a: torch.from_numpy(a.astype(np.uint32).view(np.int32))  # noqa: E731
    w = gptq_dequantize(as_i32(qweight), as_i32(qzeros), torch.from_numpy(s),
                        torch.arange(n_in) // group)
    g = np.arange(n_in) // group
    expect = ((q - z[g]) * s[g]).T
    np.testing.assert_allclose(w.numpy(), expect, rtol=1e-6)


def test_truncated_shard_is_named(tiny) -> None:
    folder, _, _ = tiny("dense")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        loader.load_model(folder)


def test_unsupported_architecture(tmp_path) -> None:
    cfg = make_config("dense", architectures=["MiniCPMV"], model_type="minicpmv")
    folder = write_folder(tmp_path / "v", cfg, random_weights(make_config("dense")))
    with pytest.raises(UnsupportedModelError, match="not a MiniCPM"):
        loader.load_model(folder)


def test_out_of_memory_refused_with_numbers(tiny) -> None:
    folder, _, _ = tiny("dense")
    p = loader.plan(folder)
    with pytest.raises(OutOfMemoryError, match=r"needs .* GiB but only .* GiB is free"):
        loader.check_memory("tiny", p.config, torch.float32, 4096, "cpu", free=1000)
    # and a 2B model's numbers: 2.7e9 params in bf16 ≈ 5 GiB
    from minicpm.torch.model import ModelConfig
    big = ModelConfig(vocab_size=122753, hidden_size=2304, intermediate_size=5760, num_layers=40,
                      num_heads=36, num_kv_heads=36, head_dim=64)
    need = loader.bytes_needed(big, torch.bfloat16, 4096)
    assert 5.5e9 < need < 8e9


def test_backend_refuses_when_memory_is_short(tiny, monkeypatch) -> None:
    import minicpm

    folder, _, _ = tiny("dense")
    monkeypatch.setattr(loader, "free_bytes", lambda device: 10)
    with pytest.raises(OutOfMemoryError):
        minicpm.load(str(folder), backend="torch")
