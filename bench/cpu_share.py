"""Threads chosen by what is free: ours (auto) vs raw llama-cpp-python at every fixed count,
with 0, 1 and 2 busy processes beside them, and beside a kernel-like numpy matmul loop.

    python bench/cpu_share.py [MODEL] [--prompt-tokens 256] [--new-tokens 64] [--repeats 3]
                              [--loads idle,busy1,busy2,numpy] [--json PATH]

Per load: decode and prefill tokens/s (medians over --repeats) of ours with the default
threads ("auto": cpu_share.ThreadTuner) and of raw llama-cpp-python pinned to 1..physical
threads, interleaved in one process (the order rotates every repeat), the prompt cache off
and the KV cleared before every run. Targets (issue 25): with load, ours >= 0.8x the best
fixed count; idle, ours >= 0.97x today's default (raw at the physical core count, which is
what ours used before). /proc/loadavg is recorded beside every load: on a shared machine
other people's work is part of the load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

FILLER = ("def total(values):\n    result = 0\n    for v in values:\n        result += v\n"
          "    return result\n\n")
LOADS = {
    "idle": [],
    "busy1": ["busy"],
    "busy2": ["busy", "busy"],
    "numpy": ["numpy"],  # a notebook kernel in BLAS: OpenBLAS threads on every core
}
PROGRAMS = {
    "busy": "while True: pass",
    "numpy": ("import numpy as np\na = np.random.rand(768, 768)\n"
              "while True:\n    a = (a @ a) / 768.0\n"),
}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def start_load(kinds: list[str]) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", PROGRAMS[k]]) for k in kinds]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


class Ours:
    def __init__(self, path: str, n_ctx: int):
        import minicpm

        self.engine = minicpm.load(path, backend="llama.cpp", n_ctx=n_ctx, cache_mb=0,
                                   speculative="off")
        self.name = "ours (auto)"

    def tokens(self, text: str) -> int:
        return self.engine.count_tokens(text, add_bos=True)

    def run(self, text: str, n_new: int) -> dict[str, float]:
        self.engine.backend.kv.forget()  # no reuse: every run prefills the whole prompt
        g = self.engine.complete(text, temperature=0, max_tokens=n_new, ignore_eos=True)
        g.read()
        u = g.usage
        return {"prefill_tps": u.prefill_tokens_per_second, "decode_tps": u.tokens_per_second,
                "threads": self.engine.stats()["threads"]["n_threads"]}


class Raw:
    def __init__(self, path: str, n_ctx: int, threads: int):
        import llama_cpp

        self.llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.threads = threads
        self.name = f"raw {threads} thread{'s' if threads > 1 else ''}"

    def run(self, text: str, n_new: int) -> dict[str, float]:
        from minicpm.bench import time_tokens  # the timing loop `minicpm bench` uses

        llm = self.llm
        prompt = llm.tokenize(text.encode(), add_bos=True)
        llm.reset()
        start, first, end, n = time_tokens(llm.generate(prompt, temp=0.0, reset=True), n_new)
        return {"prefill_tps": len(prompt) / (first - start),
                "decode_tps": (n - 1) / (end - first), "threads": self.threads}


def run(model: str | None, n_prompt: int, n_new: int, repeats: int,
        loads: list[str]) -> dict[str, Any]:
    from minicpm.catalogue import resolve
    from minicpm.cpu_share import physical_cores

    path = str(resolve(model).path)
    phys = physical_cores()
    n_ctx = max(1024, n_prompt + n_new + 16)
    ours = Ours(path, n_ctx)
    engines: list[Any] = [ours] + [Raw(path, n_ctx, n) for n in range(1, phys + 1)]
    reps = FILLER * (n_prompt // 20 + 2)
    text = reps[:len(reps) * n_prompt // max(1, ours.tokens(reps))]
    out: dict[str, Any] = {"model": path, "physical_cores": phys, "prompt_tokens":
                           ours.tokens(text), "new_tokens": n_new, "repeats": repeats,
                           "loads": {}}
    for load in loads:
        procs = start_load(LOADS[load])
        try:
            time.sleep(1.0)  # let the load settle (and the scheduler spread it)
            before = loadavg()
            runs: dict[str, list[dict[str, float]]] = {e.name: [] for e in engines}
            for r in range(repeats):
                order = engines[r % len(engines):] + engines[:r % len(engines)]
                for e in order:
                    runs[e.name].append(e.run(text, n_new))
            after = loadavg()
        finally:
            stop_load(procs)
        rows = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                for name, rs in runs.items()}
        rows[ours.name]["threads_seen"] = sorted({x["threads"] for x in runs[ours.name]})
        out["loads"][load] = {"loadavg_before": before, "loadavg_after": after, "rows": rows}
        time.sleep(1.0)
    return out


def summarize(res: dict[str, Any]) -> list[dict[str, Any]]:
    phys = res["physical_cores"]
    today = f"raw {phys} thread{'s' if phys > 1 else ''}"
    table = []
    for load, d in res["loads"].items():
        rows = d["rows"]
        ours = rows["ours (auto)"]
        fixed = {k: v for k, v in rows.items() if k.startswith("raw")}
        best_dec = max(v["decode_tps"] for v in fixed.values())
        best_pre = max(v["prefill_tps"] for v in fixed.values())
        table.append({
            "load": load, "loadavg": d["loadavg_before"], "threads": ours["threads_seen"],
            "ours_decode": ours["decode_tps"], "ours_prefill": ours["prefill_tps"],
            **{f"{k}_decode": v["decode_tps"] for k, v in fixed.items()},
            **{f"{k}_prefill": v["prefill_tps"] for k, v in fixed.items()},
            "decode_vs_best": ours["decode_tps"] / best_dec,
            "prefill_vs_best": ours["prefill_tps"] / best_pre,
            "decode_vs_today": ours["decode_tps"] / rows[today]["decode_tps"],
            "prefill_vs_today": ours["prefill_tps"] / rows[today]["prefill_tps"],
        })
    return table


def print_table(res: dict[str, Any]) -> None:
    table = summarize(res)
    raws = [k for k in res["loads"][next(iter(res["loads"]))]["rows"] if k.startswith("raw")]
    head = ["load", "loadavg", "ours threads", "ours dec", *[f"{r} dec" for r in raws],
            "ours pre", *[f"{r} pre" for r in raws], "dec/best", "pre/best", "dec/today",
            "pre/today"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for t in table:
        cells = [t["load"], t["loadavg"], ",".join(map(str, t["threads"])),
                 f"{t['ours_decode']:.1f}", *[f"{t[f'{r}_decode']:.1f}" for r in raws],
                 f"{t['ours_prefill']:.0f}", *[f"{t[f'{r}_prefill']:.0f}" for r in raws],
                 f"{t['decode_vs_best']:.2f}", f"{t['prefill_vs_best']:.2f}",
                 f"{t['decode_vs_today']:.2f}", f"{t['prefill_vs_today']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loads", default=",".join(LOADS))
    p.add_argument("--json", default=None)
    a = p.parse_args()
    loads = [x for x in a.loads.split(",") if x]
    bad = [x for x in loads if x not in LOADS]
    if bad:
        p.error(f"unknown load {bad}; choose from {', '.join(LOADS)}")
    res = run(a.model, a.prompt_tokens, a.new_tokens, a.repeats, loads)
    res["summary"] = summarize(res)
    print_table(res)
    print(json.dumps(res["summary"], indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
