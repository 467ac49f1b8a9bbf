"""The torch engine's tests build their models with the shared fixtures of tests/conftest.py
(``tiny_hf``: minicpm.testing presets written as Hugging Face folders) and check numbers against
minicpm.testing.reference (float64 numpy, written from the formulas, not from this engine)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

#: our preset names, and what each stands for
PRESET_NAMES = ["dense_tied", "gqa", "untied", "moe", "rope128k", "llama_format"]
