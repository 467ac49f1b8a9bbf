"""What the engine worker process costs: decode rate and time to first token through the
worker vs in-process (same model, interleaved rounds, same run), the time from a crash to the
error and to the next answer, and the Jupyter server's start-up time and memory.

    python bench/worker_ipc.py [--model stand-in] [--rounds 6] [--max-tokens 64]
                               [--json bench/results/worker_ipc.json] [--no-server]

Client-side clocks throughout: TTFT = call → first delta in the caller's thread; decode =
(tokens - 1) / (last delta - first delta). Prompts differ per round (no prompt-cache help) and
each round runs both engines, alternating which goes first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

import minicpm
from minicpm import worker

TOPICS = ["cats", "rivers", "bridges", "volcanoes", "libraries", "trains", "gardens", "comets",
          "markets", "lighthouses", "glaciers", "orchestras"]


def one(engine: Any, topic: str, max_tokens: int) -> dict[str, float]:
    msgs = [{"role": "user", "content": f"Write a long story about {topic}."}]
    t0 = time.perf_counter()
    g = engine.chat(msgs, temperature=0, max_tokens=max_tokens)
    first = last = None
    for _ in g:
        last = time.perf_counter()
        first = first or last
    assert first is not None and last is not None
    n = g.usage.completion_tokens
    return {"ttft_ms": (first - t0) * 1000,
            "tok_s": (n - 1) / (last - first) if n > 1 and last > first else 0.0}


def ipc(model: str, rounds: int, max_tokens: int, opts: dict[str, Any]) -> dict[str, Any]:
    here = minicpm.load(model, **opts)
    there = worker.load(model, **opts)
    one(here, "warm-up", 8)
    one(there, "warm-up", 8)
    rows: dict[str, list[dict[str, float]]] = {"in-process": [], "worker": []}
    for r in range(rounds):
        order = [("in-process", here), ("worker", there)]
        if r % 2:
            order.reverse()
        for name, eng in order:
            rows[name].append(one(eng, TOPICS[r % len(TOPICS)] + f" {r}", max_tokens))
    rtt = {}
    for name, eng in (("in-process", here), ("worker", there)):
        times = []
        for _ in range(300):  # one small call: what a message each way costs
            t = time.perf_counter()
            eng.count_tokens("x")
            times.append((time.perf_counter() - t) * 1e6)
        rtt[name] = statistics.median(times)
    here.close()
    there.close()
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("ttft_ms", "tok_s")}
           for k, v in rows.items()}
    return {"rows": rows, "median": med, "count_tokens_us": rtt,
            "decode_ratio": med["worker"]["tok_s"] / med["in-process"]["tok_s"],
            "ttft_added_ms": med["worker"]["ttft_ms"] - med["in-process"]["ttft_ms"]}


def crash(model: str, opts: dict[str, Any], repeats: int = 3) -> dict[str, Any]:
    """SIGKILL mid-stream → the caller's error; → a new worker's first answer."""
    to_error, to_answer = [], []
    for _ in range(repeats):
        w = worker.load(model, **opts)
        g = w.chat([{"role": "user", "content": "Write a long story."}], max_tokens=400)
        it = iter(g)
        next(it)
        t0 = time.perf_counter()
        os.kill(w.pid, signal.SIGKILL)
        try:
            list(it)
        except minicpm.EngineCrashedError:
            pass
        to_error.append((time.perf_counter() - t0) * 1000)
        w2 = worker.load(model, **opts)
        w2.chat([{"role": "user", "content": "Say hi."}], max_tokens=4).read()
        to_answer.append(time.perf_counter() - t0)
        w2.close()
    return {"crash_to_error_ms": statistics.median(to_error),
            "crash_to_next_answer_s": statistics.median(to_answer)}


def _get(url: str, path: str) -> dict[str, Any]:
    req = urllib.request.Request(url + path, headers={"Authorization": "token bench"})
    return json.loads(urllib.request.urlopen(req, timeout=5).read())


def server(model: str, engine_process: bool) -> dict[str, Any]:
    """Start a jupyter server with the extension: seconds to answer /minicpm/status, its RSS
    before the model (load at first use), then after a first answer; crash → next answer."""
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    sock.close()
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--IdentityProvider.token=bench", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={tmp}", f"--MiniCPM.model={model}", "--MiniCPM.n_ctx=1024",
         "--MiniCPM.load_on_start=False", f"--MiniCPM.engine_process={engine_process}",
         f"--MiniCPM.chats_dir={tmp}/chats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        while True:
            try:
                _get(url, "/minicpm/status")
                break
            except OSError:
                time.sleep(0.02)
        out["startup_s"] = time.perf_counter() - t0
        time.sleep(1.0)
        out["server_rss_mb_no_model"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        body = json.dumps({"messages": [{"role": "user", "content": "Say hi."}],
                           "max_tokens": 4}).encode()

        def ask() -> None:
            req = urllib.request.Request(url + "/minicpm/v1/chat/completions", data=body,
                                         headers={"Authorization": "token bench",
                                                  "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=300).read()

        ask()
        out["server_rss_mb_model_loaded"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        pid = _get(url, "/minicpm/status")["engine_process"]["pid"]
        if pid is not None:
            out["worker_rss_mb"] = psutil.Process(pid).memory_info().rss / 2**20
            t1 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while _get(url, "/minicpm/status")["state"] != "error":
                time.sleep(0.01)
            ask()  # restarts the engine, then answers
            out["crash_to_next_answer_s"] = time.perf_counter() - t1
    finally:
        proc.terminate()
        proc.wait(20)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="stand-in")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--no-server", action="store_true")
    a = p.parse_args()
    opts = {"n_ctx": 1024, "n_threads": a.threads}
    result: dict[str, Any] = {"model": a.model, "loadavg_before": os.getloadavg()}
    result["ipc"] = ipc(a.model, a.rounds, a.max_tokens, opts)
    result["crash"] = crash(a.model, opts)
    if not a.no_server:
        result["server"] = {"worker": server(a.model, True), "in-process": server(a.model, False)}
    result["loadavg_after"] = os.getloadavg()
    m = result["ipc"]["median"]
    print(f"{'':12} {'TTFT ms':>9} {'decode tok/s':>13}   (median of {a.rounds}, {a.model})")
    for k in ("in-process", "worker"):
        print(f"{k:12} {m[k]['ttft_ms']:9.1f} {m[k]['tok_s']:13.1f}")
    print(f"decode ratio worker/in-process {result['ipc']['decode_ratio']:.3f}; "
          f"TTFT added {result['ipc']['ttft_added_ms']:+.1f} ms")
    r = result["ipc"]["count_tokens_us"]
    print(f"count_tokens('x') round trip: in-process {r['in-process']:.0f} µs, "
          f"worker {r['worker']:.0f} µs (median of 300)")
    c = result["crash"]
    print(f"crash → error {c['crash_to_error_ms']:.0f} ms; crash → next answer (new worker) "
          f"{c['crash_to_next_answer_s']:.2f} s")
    for k, s in result.get("server", {}).items():
        print(f"server, engine {k:10}: " + ", ".join(f"{n} {v:.2f}" for n, v in s.items()))
    print(f"load average before/after: {result['loadavg_before']} / {result['loadavg_after']}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "ipc"} |
                     {"ipc": {k: v for k, v in result["ipc"].items() if k != "rows"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
