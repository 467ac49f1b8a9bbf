"""Our PyTorch MiniCPM: model, loader, tokenizer, generation, quantization, fused kernels.

Imports torch; only `minicpm.backends.torch_engine` imports this package, lazily."""

from .generate import Generator, Sampler
from .loader import load_model
from .model import MiniCPM, ModelConfig

__all__ = ["Generator", "MiniCPM", "ModelConfig", "Sampler", "load_model"]
