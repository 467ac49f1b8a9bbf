"""Server overhead and load: WebSocket and OpenAI endpoint vs the engine in-process.

    python bench/server.py [--model stand-in] [--max-tokens 64] [--runs 3]
                           [--clients 16] [--duration 60]

Starts `jupyter server` with minicpm_server in a subprocess (same model, same machine), then
1) decode tokens/s and time to first token: in-process, WebSocket, OpenAI SSE (greedy, same
   prompt, median of --runs); 2) --clients concurrent WebSocket clients for --duration seconds:
   all finish, p50/p95 request latency, server RSS before and after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any

import psutil
import websocket  # websocket-client
from minicpm_server.testserver import start_server as launch

import minicpm

TOKEN = "bench"
TOPICS = ["oceans", "mountains", "rivers", "forests", "deserts", "cities", "islands", "lakes",
          "glaciers", "volcanoes", "meadows", "caves", "storms", "gardens", "bridges", "trains",
          "castles", "harbours", "valleys", "canyons", "beaches", "markets", "libraries", "farms"]
PROMPT = [{"role": "user", "content": "Write a short paragraph about the sea."}]  # load test


def prompt(i: int) -> list[dict[str, str]]:
    """Prompt number i: same shape for every i, different from the first words, so that no
    request reuses much of llama.cpp's prompt-prefix cache from the one before it (each TTFT is
    a near-full prefill). Every request in a run gets its own number."""
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "system", "content": f"{topic.capitalize()} are your subject today."},
            {"role": "user", "content": f"Write a short paragraph about {topic}."}]


def start_server(model: str, n_ctx: int, threads: int, concurrency: int) -> tuple[Any, str]:
    try:
        server = launch(f"--MiniCPM.model={model}", f"--MiniCPM.n_ctx={n_ctx}",
                        f"--MiniCPM.n_threads={threads}", f"--MiniCPM.concurrency={concurrency}",
                        "--MiniCPM.chats_dir=/tmp/minicpm-bench-chats", token=TOKEN, timeout=120)
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    return server.proc, server.url


def rate(t0: float, stamps: list[float], n_tokens: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s excluding the first token) from the client's clock."""
    ttft = stamps[0] - t0
    dec = stamps[-1] - stamps[0]
    return ttft, (n_tokens - 1) / dec if dec > 0 and n_tokens > 1 else 0.0


def in_process(engine: minicpm.Engine, max_tokens: int, msgs: list[dict[str, str]]
               ) -> tuple[float, float]:
    t0 = time.perf_counter()
    stamps = []
    gen = engine.chat(msgs, max_tokens=max_tokens, temperature=0, ignore_eos=True)
    for _ in gen:
        stamps.append(time.perf_counter())
    return rate(t0, stamps, gen.usage.completion_tokens)


def ws_once(ws: Any, rid: str, max_tokens: int, msgs: list[dict[str, str]]
            ) -> tuple[float, float, dict[str, Any]]:
    sampling = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    t0 = time.perf_counter()
    ws.send(json.dumps({"type": "chat", "id": rid, "messages": msgs, "sampling": sampling,
                        "context": []}))
    stamps = []
    while True:
        f = json.loads(ws.recv())
        if f.get("id") != rid:
            continue
        if f["type"] == "delta":
            stamps.append(time.perf_counter())
        elif f["type"] in ("done", "error"):
            break
    if f["type"] == "error":
        raise RuntimeError(f)
    ttft, tps = rate(t0, stamps, f["usage"]["completion_tokens"])
    return ttft, tps, f


def ws_connect(url: str) -> Any:
    return websocket.create_connection(url.replace("http", "ws", 1) + "/minicpm/chat",
                                       header=[f"Authorization: token {TOKEN}"])


def openai_once(url: str, max_tokens: int, msgs: list[dict[str, str]]
                ) -> tuple[float, float]:
    import openai

    client = openai.OpenAI(base_url=url + "/minicpm/v1", api_key=TOKEN, max_retries=0)
    t0 = time.perf_counter()
    stamps = []
    n = 0
    stream = client.chat.completions.create(
        model="default", messages=msgs, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    for c in stream:
        if c.choices and c.choices[0].delta.content:
            stamps.append(time.perf_counter())
        if c.usage:
            n = c.usage.completion_tokens
    client.close()
    return rate(t0, stamps, n)


def load_test(url: str, clients: int, duration: float, max_tokens: int) -> dict[str, Any]:
    lat: list[float] = []
    errors: list[Any] = []
    done_counts = [0] * clients
    stop_at = time.monotonic() + duration

    def client(i: int) -> None:
        try:
            ws = ws_connect(url)
            k = 0
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                ws_once(ws, f"c{i}-{k}", max_tokens, PROMPT)
                lat.append(time.perf_counter() - t0)
                done_counts[i] += 1
                k += 1
            ws.close()
        except Exception as e:  # counted, reported
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 600)
    lat.sort()
    return {"requests": len(lat), "clients_all_finished": all(done_counts) and not errors,
            "errors": errors[:3], "p50_s": statistics.median(lat) if lat else None,
            "p95_s": lat[int(0.95 * (len(lat) - 1))] if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="stand-in")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the load test")
    ap.add_argument("--load-max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args()

    engine = minicpm.load(a.model, n_ctx=a.n_ctx, n_threads=a.threads)
    print(f"model: {engine.info.label}", file=sys.stderr)
    proc, url = start_server(a.model, a.n_ctx, a.threads, 1)
    try:
        ps = psutil.Process(proc.pid)
        ws = ws_connect(url)
        ws_once(ws, "warm", 4, PROMPT)
        # Interleaved, every path generating exactly max_tokens (ignore_eos): drift of a shared
        # machine hits all three alike. An idle engine holds memory, not cores.
        inproc, wsr, oar = [], [], []
        for i in range(a.runs):
            inproc.append(in_process(engine, a.max_tokens, prompt(3 * i)))
            wsr.append(ws_once(ws, f"w{i}", a.max_tokens, prompt(3 * i + 1))[:2])
            oar.append(openai_once(url, a.max_tokens, prompt(3 * i + 2)))
        ws.close()
        engine.close()
        rss_before = ps.memory_info().rss
        load = load_test(url, a.clients, a.duration, a.load_max_tokens)
        rss_after = ps.memory_info().rss
    finally:
        proc.terminate()
        proc.wait(30)

    def med(rows: list[tuple[float, float]]) -> dict[str, float]:
        return {"ttft_ms": round(1000 * statistics.median(r[0] for r in rows), 1),
                "tokens_per_s": round(statistics.median(r[1] for r in rows), 1)}

    base, w, o = med(inproc), med(wsr), med(oar)
    out = {
        "model": a.model, "max_tokens": a.max_tokens, "runs": a.runs,
        "in_process": base, "websocket": w, "openai_sse": o,
        "websocket_vs_in_process": round(w["tokens_per_s"] / base["tokens_per_s"], 3),
        "openai_vs_in_process": round(o["tokens_per_s"] / base["tokens_per_s"], 3),
        "websocket_added_ttft_ms": round(w["ttft_ms"] - base["ttft_ms"], 1),
        "openai_added_ttft_ms": round(o["ttft_ms"] - base["ttft_ms"], 1),
        "load": {"clients": a.clients, "duration_s": a.duration,
                 "max_tokens": a.load_max_tokens, **load,
                 "rss_before_mib": round(rss_before / 2**20, 1),
                 "rss_after_mib": round(rss_after / 2**20, 1)},
    }
    print_table(out)
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


def print_table(out: dict[str, Any]) -> None:
    """A human table on stderr; stdout carries the JSON."""
    rows = [("in-process Engine.chat", out["in_process"], 1.0, 0.0),
            ("WebSocket /minicpm/chat", out["websocket"], out["websocket_vs_in_process"],
             out["websocket_added_ttft_ms"]),
            ("OpenAI SSE (openai client)", out["openai_sse"], out["openai_vs_in_process"],
             out["openai_added_ttft_ms"])]
    err = sys.stderr
    print(f"{'path':28s} {'TTFT ms':>8s} {'decode tok/s':>13s} {'vs in-process':>14s} "
          f"{'added TTFT ms':>14s}", file=err)
    for name, m, ratio, added in rows:
        print(f"{name:28s} {m['ttft_ms']:8.1f} {m['tokens_per_s']:13.1f} {ratio:14.3f} "
              f"{added:14.1f}", file=err)
    ld = out["load"]
    print(f"load: {ld['clients']} clients x {ld['duration_s']:.0f} s, {ld['requests']} requests, "
          f"errors {len(ld['errors'])}, all finished {ld['clients_all_finished']}, "
          f"p50 {ld['p50_s']:.2f} s, p95 {ld['p95_s']:.2f} s, server RSS "
          f"{ld['rss_before_mib']} -> {ld['rss_after_mib']} MiB", file=err)


if __name__ == "__main__":
    main()
