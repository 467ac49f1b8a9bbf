"""The pre-read (issue 25): time to the first answer text of a whole-notebook question, cold vs
after the pre-read of that notebook finished, and the extra wait of a short chat that arrives
while a pre-read runs.

    python bench/preread.py [--context-tokens 3000] [--repeats 2] [--json PATH]
    python bench/preread.py --synthetic minicpm-2b --context-tokens 2000 --repeats 1

The model runs in its worker process (as in the server); prompts are built by the server's own
code (``chat_request.chat_job`` for the question, ``preread_api.preread_from`` +
``preread.read_prefix`` for the pre-read), so the question's prompt is what the sidebar's Send
makes. TTFT here = from the question's job being built (prompt assembly included) to the first
text delta, without the browser and socket (a few ms). Each measurement uses a notebook of its
own (a salt in every cell), so nothing is shared with an earlier one but the system prompt.

"Extra wait": a short chat ("Say hi.", one token) on an idle engine vs the same chat sent while
a pre-read of another notebook runs (its cancel set as ``EngineHost.submit`` does); both
interleaved, ``--repeats`` times. The machine's load average is printed beside every case.
Targets (issue 25): stand-in, 3,000 tokens, after the pre-read ≤ 1.5 s; MiniCPM-2B shapes,
2,000 tokens ≤ 3 s; extra wait ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from typing import Any

CELL = ("# %% cell [{i}]\ndf_{s}{i} = pd.read_csv('data/{name}_{s}{i}.csv', parse_dates=['when'])\n"
        "df_{s}{i} = df_{s}{i}.dropna(subset=['value']).query('value > {i}')\n"
        "summary_{i} = df_{s}{i}.groupby('{name}')['value'].agg(['mean', 'std', 'count'])")
NAMES = ("sales", "weather", "sensors", "visits", "orders", "trips")
QUESTION = "What does this notebook do, cell by cell?"


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def notebook_part(engine: Any, salt: str, n_tokens: int) -> dict[str, Any]:
    cells: list[str] = []
    while True:
        i = len(cells)
        cells.append(CELL.format(i=i, s=salt, name=NAMES[i % len(NAMES)]))
        text = "\n\n".join(cells)
        if i % 4 == 3 and engine.count_tokens(text) >= n_tokens:
            return {"kind": "notebook", "label": f"notebook bench_{salt}.ipynb",
                    "language": "python", "text": text}


def ttft(engine: Any, cfg: Any, context: list[dict[str, Any]], question: str,
         max_tokens: int = 4, cancel_preread: threading.Event | None = None) -> dict[str, Any]:
    """Send → first text: the server's chat job (assembly) then the engine's first delta."""
    from minicpm_server.chat_request import chat_job

    t0 = time.perf_counter()
    if cancel_preread is not None:
        cancel_preread.set()  # EngineHost.submit stops a running pre-read
    job = asyncio.run(chat_job({"id": "b", "messages": [{"role": "user", "content": question}],
                                "context": context,
                                "sampling": {"max_tokens": max_tokens, "temperature": 0}},
                               cfg))
    what = job.build_request(engine, job.cancel_event)
    gen = engine.chat(what.messages, cancel=job.cancel_event, **job.sampling)
    first = None
    for _ in gen:
        first = first or time.perf_counter() - t0
    gen.close()
    last = engine.stats().get("prompt_cache", {}).get("last", {})
    return {"ttft_s": round(first if first is not None else time.perf_counter() - t0, 3),
            "prompt_tokens": gen.usage.prompt_tokens, "reused": last.get("reused")}


def preread(cfg: Any, context: list[dict[str, Any]]) -> Any:
    """The server's pre-read job for the sidebar's body (the same context, no question)."""
    from minicpm_server.preread_api import preread_from

    return asyncio.run(preread_from({"path": "bench.ipynb", "context": context,
                                     "sampling": {"max_tokens": 4}}, cfg))


def run_case(label: str, model: Any, n_tokens: int, repeats: int) -> dict[str, Any]:
    from minicpm_server.config import MiniCPM
    from minicpm_server.preread import read_prefix

    from minicpm import worker

    cfg = MiniCPM()
    engine = worker.load(model, n_ctx=4096)
    out: dict[str, Any] = {"case": label, "context_tokens": n_tokens, "load_before": loadavg(),
                           "cold": [], "after_preread": [], "preread_s": [],
                           "idle_chat_ms": [], "mid_preread_chat_ms": []}
    try:
        ttft(engine, cfg, [], "Say hi.", 1)  # warm-up: first-call costs out of the figures
        for r in range(repeats):
            ctx = [notebook_part(engine, f"c{r}", n_tokens)]
            out["cold"].append(ttft(engine, cfg, ctx, QUESTION))
            ctx = [notebook_part(engine, f"w{r}", n_tokens)]
            p = preread(cfg, ctx)
            t = time.perf_counter()
            res = read_prefix(p, engine)
            out["preread_s"].append(round(time.perf_counter() - t, 2))
            out.setdefault("preread_results", []).append(res)
            out["after_preread"].append(ttft(engine, cfg, ctx, QUESTION))
            # a short chat on an idle engine, then the same chat during a pre-read
            out["idle_chat_ms"].append(1000 * ttft(engine, cfg, [], "Say hi.", 1)["ttft_s"])
            p = preread(cfg, [notebook_part(engine, f"m{r}", n_tokens)])
            before = engine.stats()["kv"]["live_tokens"]
            th = threading.Thread(target=read_prefix, args=(p, engine))
            th.start()
            while th.is_alive() and engine.stats()["kv"]["live_tokens"] == before:
                time.sleep(0.005)  # until the pre-read is reading
            time.sleep(0.05)  # land mid-chunk, as a real question would
            mid = ttft(engine, cfg, [], "Say hi.", 1, cancel_preread=p.job.cancel_event)
            th.join()
            out["mid_preread_chat_ms"].append(1000 * mid["ttft_s"])
    finally:
        engine.close()
    out["load_after"] = loadavg()
    med = statistics.median
    out["summary"] = {
        "cold_ttft_s": med(x["ttft_s"] for x in out["cold"]),
        "after_preread_ttft_s": med(x["ttft_s"] for x in out["after_preread"]),
        "preread_s": med(out["preread_s"]),
        "extra_wait_ms": round(med(out["mid_preread_chat_ms"]) - med(out["idle_chat_ms"]), 1),
        "prompt_tokens": out["after_preread"][-1]["prompt_tokens"],
        "reused_after_preread": out["after_preread"][-1]["reused"]}
    return out


def model_arguments(ap: argparse.ArgumentParser, repeats: int) -> None:
    """The options the pre-read benchmarks share (this one and preread_completion.py)."""
    ap.add_argument("model", nargs="?", default="stand-in")
    ap.add_argument("--synthetic", choices=["minicpm-2b", "minicpm-1b"], default=None)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--json", default=None)


def chosen_model(a: argparse.Namespace) -> tuple[Any, str]:
    """(what worker.load gets, its label): the named model or a synthetic GGUF's shapes."""
    if not a.synthetic:
        return a.model, a.model
    from minicpm.bench import synthetic_gguf

    return synthetic_gguf(a.synthetic), f"{a.synthetic} shapes (random Q4_0)"


def report_json(res: dict[str, Any], path: str | None) -> None:
    print(json.dumps(res))
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(ap, repeats=2)
    ap.add_argument("--context-tokens", type=int, default=3000)
    a = ap.parse_args()
    model, label = chosen_model(a)
    res = run_case(label, model, a.context_tokens, a.repeats)
    s = res["summary"]
    print(f"\npre-read: {label}, ~{a.context_tokens}-token notebook, {a.repeats} repeat(s), "
          f"pid {os.getpid()}")
    print(f"load average: {res['load_before']} before, {res['load_after']} after")
    print("| what | median |\n| --- | --- |")
    print(f"| first answer text, cold | {s['cold_ttft_s']:.2f} s |")
    print(f"| first answer text, after the pre-read | {s['after_preread_ttft_s']:.2f} s "
          f"({s['reused_after_preread']} of {s['prompt_tokens']} prompt tokens reused) |")
    print(f"| the pre-read itself (idle time) | {s['preread_s']:.1f} s |")
    print(f"| short chat mid-pre-read: extra wait | {s['extra_wait_ms']:.0f} ms "
          f"(idle {statistics.median(res['idle_chat_ms']):.0f} ms, mid "
          f"{statistics.median(res['mid_preread_chat_ms']):.0f} ms) |")
    report_json(res, a.json)


if __name__ == "__main__":
    main()
