"""Our MiniCPM vs the float64 reference: whole-sequence logits, and cached prefill + decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minicpm.testing import PRESETS, reference
from minicpm.torch.loader import load_model

TOKENS = [1, 7, 30, 5, 11, 42, 9, 17, 3, 60, 22, 8]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", list(PRESETS))
def test_logits_match_reference(tiny_hf, name: str) -> None:
    m = tiny_hf(name)
    model, _ = load_model(m.path, dtype="float32")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    ref = reference.forward(m.cfg, m.weights, TOKENS)
    assert rel_err(got, ref) < 1e-4


@pytest.mark.parametrize("name", ["dense_tied", "gqa", "moe", "llama_format"])
def test_cached_decode_matches_full_forward(tiny_hf, name: str) -> None:
    """Prefill 5 tokens then decode one at a time through the static cache; each step's logits
    equal the reference for the prefix (both the trimmed eager path and the full-cache+mask path
    that the CUDA graph uses)."""
    m = tiny_hf(name)
    model, _ = load_model(m.path, dtype="float32")
    model.setup_caches(32)
    ref = reference.forward(m.cfg, m.weights, TOKENS)
    with torch.inference_mode():
        out = model(torch.tensor([TOKENS[:5]]), torch.arange(5), kv_len=5)
        assert rel_err(out[0].numpy(), ref[:5]) < 1e-4
        for i in range(5, len(TOKENS)):
            eager = i % 2 == 1  # alternate eager trim and static full-cache mask
            step = model(torch.tensor([[TOKENS[i]]]), torch.tensor([i]),
                         kv_len=i + 1 if eager else None, static_shapes=not eager)
            assert rel_err(step[0, 0].numpy(), ref[i]) < 1e-4


def test_dynamic_ntk_changes_beyond_max_positions(tiny_hf) -> None:
    """rope128k with max_position_embeddings=8: 12 tokens switch on the NTK base, and the
    reference (which applies it at T=12) agrees while a plain-rope model would not."""
    m = tiny_hf("rope128k", max_position_embeddings=8)
    model, _ = load_model(m.path, dtype="float32")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    assert rel_err(got, reference.forward(m.cfg, m.weights, TOKENS)) < 1e-4
    plain = reference.forward(m.cfg.replace(rope_scaling=None), m.weights, TOKENS)
    assert rel_err(got, plain) > 1e-3


def test_bf16_close_to_reference(tiny_hf) -> None:
    m = tiny_hf("gqa")
    model, _ = load_model(m.path, dtype="bfloat16")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    assert rel_err(got, reference.forward(m.cfg, m.weights, TOKENS)) < 5e-2


def test_embed_and_input_embeds_path(tiny_hf) -> None:
    """The vision hook: forward(input_embeds=model.embed(tokens)) == forward(tokens)."""
    model, _ = load_model(tiny_hf("dense_tied").path, dtype="float32")
    ids = torch.tensor([TOKENS])
    with torch.inference_mode():
        a = model(ids)
        b = model(input_embeds=model.embed(ids))
    torch.testing.assert_close(a, b)
