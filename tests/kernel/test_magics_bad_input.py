"""Bad input: a short clear message in the cell (stderr), never a traceback of ours."""

from __future__ import annotations

import pytest
from kernelharness import Kernel


@pytest.mark.parametrize("code,needle", [
    ("%minicpm --bogus hello", "unknown option --bogus"),
    ("%minicpm --temperature warm hello", "--temperature needs a number"),
    ("%minicpm --format yaml hello", "--format must be one of"),
    ("%minicpm", "nothing to ask"),
    ("%minicpm fix", "no error to fix yet"),
    ("%minicpm use NoSuchModel-9B", "unknown model 'NoSuchModel-9B'"),
    ("%minicpm use MiniCPM-V-2", "is not on this machine"),
    ("%minicpm --model NoSuchModel-9B hello", "unknown model 'NoSuchModel-9B'"),
    ("%minicpm image 42", "not an image"),
    ("%minicpm image 'hello.png'", "str, not an image"),
    ("%minicpm image undefined_thing", "NameError"),
    ("%minicpm image", "no figure to explain yet"),
    ("%minicpm explain 999", "there is no cell In[999]"),
])
def test_bad_input_is_one_clear_line(fresh_kernel_module: Kernel, code: str, needle: str) -> None:
    r = fresh_kernel_module.run(code)
    assert r.status == "ok" and not r.errors
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("%minicpm: ")
