"""MiniCPM-V in PyTorch: SigLIP vision tower, perceiver resampler, LLaVA-UHD slicing, and the
model that splices image features into MiniCPM's input. Imports torch lazily (slicing does not
need it)."""

from __future__ import annotations

from .slicing import SliceLayout, layout, placeholder, slice_image

__all__ = ["SliceLayout", "layout", "placeholder", "slice_image"]
