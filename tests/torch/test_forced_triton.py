"""The whole tests/torch suite once more with the Triton path forced on CPU
(MINICPM_TRITON=interpret: every fused op of the model runs its Triton kernel through Triton's
interpreter), so the kernels are exercised inside real forward passes, generation, quantized
layers and the backend, not only one by one.

Left out of the inner run: this file; the kernel-by-kernel interpreter tests (they already
run the kernels); the capture-safety test (the interpreter copies through the host, which a
GPU launch does not, so its guard would flag the interpreter itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_torch_suite_with_triton_forced_on_cpu() -> None:
    env = {**os.environ, "MINICPM_TRITON": "interpret", "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-rA", "-x", "-p", "no:cacheprovider",
           "-m", "not gpu", "--ignore", str(HERE / "test_forced_triton.py"),
           "--ignore", str(HERE / "test_triton_interpreter.py"),
           "--ignore", str(HERE / "test_capture_safety.py")]
    r = subprocess.run(cmd, cwd=HERE.parent.parent, env=env, capture_output=True, text=True,
                       timeout=900)
    tail = r.stdout[-4000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    # the inner run really took the Triton path (that test asserts it under "interpret")
    assert "PASSED tests/torch/test_kernels.py::test_dispatch_follows_minicpm_triton" in r.stdout, tail
