"""Backends: llama.cpp (CPU, GGUF), torch (our PyTorch MiniCPM), remote (OpenAI-compatible)."""

from .base import Backend, EngineInfo, Usage

BACKEND_NAMES = ("llama.cpp", "torch", "remote")

__all__ = ["BACKEND_NAMES", "Backend", "EngineInfo", "Usage"]
