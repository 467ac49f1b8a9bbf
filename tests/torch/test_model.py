"""Our MiniCPM vs the float64 reference: whole-sequence logits, and cached prefill + decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_testlib import CONFIGS, reference_logits

from minicpm.torch.loader import load_model

TOKENS = [1, 7, 30, 5, 11, 42, 9, 17, 3, 60, 22, 8]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_reference(tiny, name: str) -> None:
    folder, cfg, wts = tiny(name)
    model, _ = load_model(folder, dtype="float32")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    ref = reference_logits(cfg, wts, TOKENS)
    assert rel_err(got, ref) < 1e-4


@pytest.mark.parametrize("name", ["dense", "gqa", "moe", "llama"])
def test_cached_decode_matches_full_forward(tiny, name: str) -> None:
    """Prefill 5 tokens then decode one at a time through the static cache; each step's logits
    equal the reference for the prefix (both the trimmed eager path and the full-cache+mask path
    that the CUDA graph uses)."""
    folder, cfg, wts = tiny(name)
    model, _ = load_model(folder, dtype="float32")
    model.setup_caches(32)
    ref = reference_logits(cfg, wts, TOKENS)
    with torch.inference_mode():
        out = model(torch.tensor([TOKENS[:5]]), torch.arange(5), kv_len=5)
        assert rel_err(out[0].numpy(), ref[:5]) < 1e-4
        for i in range(5, len(TOKENS)):
            kv = i + 1 if i % 2 else None  # alternate eager trim and static full-cache mask
            step = model(torch.tensor([[TOKENS[i]]]), torch.tensor([i]), kv_len=kv)
            assert rel_err(step[0, 0].numpy(), ref[i]) < 1e-4


def test_dynamic_ntk_changes_beyond_max_positions(tiny) -> None:
    """rope128k has max_position_embeddings=8: 12 tokens switch on the NTK base, and the
    reference (which applies it at T=12) agrees while a plain-rope model would not."""
    folder, cfg, wts = tiny("rope128k")
    model, _ = load_model(folder, dtype="float32")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    assert rel_err(got, reference_logits(cfg, wts, TOKENS)) < 1e-4
    plain = reference_logits({**cfg, "rope_scaling": None}, wts, TOKENS)
    assert rel_err(got, plain) > 1e-3


def test_bf16_close_to_reference(tiny) -> None:
    folder, cfg, wts = tiny("gqa")
    model, _ = load_model(folder, dtype="bfloat16")
    with torch.inference_mode():
        got = model(torch.tensor([TOKENS]))[0].numpy()
    assert rel_err(got, reference_logits(cfg, wts, TOKENS)) < 5e-2


def test_embed_and_input_embeds_path(tiny) -> None:
    """The vision hook: forward(input_embeds=model.embed(tokens)) == forward(tokens)."""
    folder, _, _ = tiny("dense")
    model, _ = load_model(folder, dtype="float32")
    ids = torch.tensor([TOKENS])
    with torch.inference_mode():
        a = model(ids)
        b = model(input_embeds=model.embed(ids))
    torch.testing.assert_close(a, b)
