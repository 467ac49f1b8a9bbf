"""Loading HF folders: shards, dtypes, both tokenizer kinds, GPTQ, errors, memory refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from minicpm.errors import ModelFileError, OutOfMemoryError, UnsupportedModelError
from minicpm.testing import preset, random_weights, reference, write_hf_folder
from minicpm.testing.spm import write_sentencepiece
from minicpm.torch import loader
from minicpm.torch.quantize import gptq_dequantize
from minicpm.torch.tokenizer import Tokenizer

TOKENS = [1, 9, 4, 22, 13, 5]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_sharded_safetensors_in_each_dtype(tiny_hf, dtype: str) -> None:
    m = tiny_hf("gqa", shards=3, dtype=dtype)
    assert (m.path / "model.safetensors.index.json").is_file()
    model, p = loader.load_model(m.path, dtype="float32")
    assert len(p.files) == 3
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    ref = reference.forward(m.cfg, m.weights, TOKENS)
    tol = 1e-4 if dtype == "float32" else 3e-2  # the file itself was rounded
    assert np.abs(got - ref).max() / np.abs(ref).max() < tol


def test_tokenizer_json(tiny_hf) -> None:
    tok = Tokenizer(tiny_hf("dense_tied").path)
    assert tok.kind == "tokenizer.json"
    text = "<用户>hello world<AI>"
    ids = tok.encode(text, add_bos=True)
    assert ids[0] == 1 and tok.piece(ids[1]) == "<用户>" and tok.piece(ids[-1]) == "<AI>"
    assert tok.eos_ids == [2] and tok.token_bytes(2) == b""
    assert b"".join(tok.token_bytes(i) for i in ids[2:-1]).decode().strip() == "hello world"


def test_sentencepiece_tokenizer_model(tmp_path) -> None:
    cfg = preset("dense_tied")
    folder = write_hf_folder(cfg, random_weights(cfg), tmp_path / "spm")
    (folder / "tokenizer.json").unlink()
    write_sentencepiece(folder, 400)
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
    """A config.json without tie_word_embeddings (HF's default is tied) but with lm_head.weight
    in the checkpoint: the logits are the reference's with *that* head, not the embeddings."""
    cfg = preset("untied")
    wts = random_weights(cfg, seed=2)
    folder = write_hf_folder(cfg, wts, tmp_path / "m")
    raw = json.loads((folder / "config.json").read_text())
    del raw["tie_word_embeddings"]
    (folder / "config.json").write_text(json.dumps(raw))
    model, p = loader.load_model(folder)
    assert p.config.tie_word_embeddings is False and model.lm_head is not None
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    ref = reference.forward(cfg, wts, TOKENS)
    tied = reference.forward(cfg.replace(tie_word_embeddings=True),
                             {k: v for k, v in wts.items() if k != "lm_head.weight"}, TOKENS)
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4
    assert np.abs(got - tied).max() / np.abs(tied).max() > 0.1


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


def test_truncated_shard_is_named(tmp_path) -> None:
    cfg = preset("dense_tied")
    folder = write_hf_folder(cfg, random_weights(cfg), tmp_path / "m")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        loader.load_model(folder)


def test_unsupported_architecture(tmp_path) -> None:
    cfg = preset("dense_tied", extra={"architectures": ["MiniCPMV"], "model_type": "minicpmv"})
    folder = write_hf_folder(cfg, random_weights(cfg), tmp_path / "v")
    with pytest.raises(UnsupportedModelError, match="not a MiniCPM"):
        loader.load_model(folder)


def test_out_of_memory_refused_with_numbers(tiny_hf) -> None:
    p = loader.plan(tiny_hf("dense_tied").path)
    with pytest.raises(OutOfMemoryError, match=r"needs .* GiB but only .* GiB is free"):
        loader.check_memory("tiny", p.config, torch.float32, 4096, "cpu", free=1000)
    # and a 2B model's numbers: 2.7e9 params in bf16 ≈ 5 GiB
    from minicpm.torch.model import ModelConfig
    big = ModelConfig(vocab_size=122753, hidden_size=2304, intermediate_size=5760, num_layers=40,
                      num_heads=36, num_kv_heads=36, head_dim=64)
    need = loader.bytes_needed(big, torch.bfloat16, 4096)
    assert 5.5e9 < need < 8e9


def test_backend_refuses_when_memory_is_short(tiny_hf, monkeypatch) -> None:
    import minicpm

    monkeypatch.setattr(loader, "free_bytes", lambda device: 10)
    with pytest.raises(OutOfMemoryError):
        minicpm.load(str(tiny_hf("dense_tied").path), backend="torch")
