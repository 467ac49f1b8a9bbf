"""The engine package sits below the kernel and server packages (issue: architecture 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "minicpm"


def test_importing_minicpm_imports_neither_magics_nor_server() -> None:
    code = ("import sys, minicpm, minicpm.api, minicpm.prompts, minicpm.catalogue\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('minicpm_magics', 'minicpm_server', 'ipywidgets')))\n"
            "print(hasattr(minicpm, 'ChatWidget'), callable(minicpm.load_ipython_extension))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "False True"], out.stdout


def test_only_the_extension_shim_names_the_kernel_package() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "minicpm_server" in text or ("minicpm_magics" in text and path != SRC / "__init__.py"):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []
