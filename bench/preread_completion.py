"""The inline completion's pre-read (issue 25): the first keystroke's suggestion in a cell just
focused, cold vs after the pre-read of that cell's prompt finished.

    python bench/preread_completion.py [MODEL] [--cells-tokens 700] [--repeats 3] [--json PATH]
    python bench/preread_completion.py --synthetic minicpm-2b --repeats 1

The model runs in its worker process (as in the server). The keystroke's request is built as
the completion socket builds it (``inline.parse_inline`` + ``completion.complete``) and the
pre-read by the server's own code (``preread_api.preread_from`` with ``kind: completion`` +
``preread.read_prefix``). Time = from the request's prompt being built to the first streamed
text (browser and socket not included). Each measurement uses cells of its own (a salt in
every cell), so nothing is shared with an earlier one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from preread import chosen_model, loadavg, model_arguments, report_json  # bench/preread.py

CELL = ("rows_{s}{i} = load_rows('data/part_{s}{i}.csv')\n"
        "clean_{s}{i} = [r for r in rows_{s}{i} if r.value is not None and r.value > {i}]\n"
        "totals_{s}{i} = summarise(clean_{s}{i}, by='region')")
PREFIX = "def report(totals):\n    for region, value in totals.items():\n        print("


def cells_above(engine: Any, salt: str, n_tokens: int) -> list[dict[str, str]]:
    cells: list[dict[str, str]] = []
    while sum(engine.count_tokens(c["source"]) for c in cells) < n_tokens:
        cells.append({"kind": "code", "source": CELL.format(i=len(cells), s=salt)})
    return cells


def first_text(engine: Any, cfg: Any, cells: list[dict[str, str]], prefix: str) -> dict[str, Any]:
    from minicpm_server.inline import parse_inline

    from minicpm import completion

    req, max_tokens, budget = parse_inline({"prefix": prefix, "suffix": "", "cells": cells,
                                            "mode": "line", "max_tokens": 8}, cfg)
    t0 = time.perf_counter()
    prompt, _sugg, gen = completion.complete(engine, req, budget=budget, max_tokens=max_tokens)
    first = None
    for _ in gen:
        first = first or time.perf_counter() - t0
    gen.close()
    last = engine.stats().get("prompt_cache", {}).get("last", {})
    return {"first_s": round(first if first is not None else time.perf_counter() - t0, 3),
            "prompt_tokens": gen.usage.prompt_tokens, "reused": last.get("reused")}


def run(model: Any, label: str, n_tokens: int, repeats: int) -> dict[str, Any]:
    from minicpm_server.config import MiniCPM
    from minicpm_server.preread import read_prefix
    from minicpm_server.preread_api import preread_from

    from minicpm import worker

    cfg = MiniCPM()
    engine = worker.load(model, n_ctx=4096)
    out: dict[str, Any] = {"case": label, "cells_tokens": n_tokens, "load_before": loadavg(),
                           "cold": [], "after_preread": [], "preread_s": []}
    try:
        first_text(engine, cfg, [], "x = ")  # warm-up
        for r in range(repeats):
            out["cold"].append(first_text(engine, cfg, cells_above(engine, f"c{r}", n_tokens),
                                          PREFIX + "r"))
            cells = cells_above(engine, f"w{r}", n_tokens)
            p = asyncio.run(preread_from({"kind": "completion", "path": "bench.ipynb",
                                          "prefix": PREFIX, "suffix": "", "cells": cells,
                                          "mode": "line"}, cfg))
            t = time.perf_counter()
            out.setdefault("preread_results", []).append(read_prefix(p, engine))
            out["preread_s"].append(round(time.perf_counter() - t, 2))
            out["after_preread"].append(first_text(engine, cfg, cells, PREFIX + "r"))
    finally:
        engine.close()
    out["load_after"] = loadavg()
    med = statistics.median
    out["summary"] = {"cold_s": med(x["first_s"] for x in out["cold"]),
                      "after_preread_s": med(x["first_s"] for x in out["after_preread"]),
                      "preread_s": med(out["preread_s"]),
                      "prompt_tokens": out["after_preread"][-1]["prompt_tokens"],
                      "reused_after_preread": out["after_preread"][-1]["reused"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_arguments(ap, repeats=3)
    ap.add_argument("--cells-tokens", type=int, default=700)
    a = ap.parse_args()
    model, label = chosen_model(a)
    res = run(model, label, a.cells_tokens, a.repeats)
    s = res["summary"]
    print(f"\ncompletion pre-read: {label}, ~{a.cells_tokens} tokens of cells above, "
          f"{a.repeats} repeat(s); load average {res['load_before']} before, "
          f"{res['load_after']} after")
    print("| what | median |\n| --- | --- |")
    print(f"| first keystroke's suggestion, cold | {s['cold_s']:.2f} s |")
    print(f"| first keystroke's suggestion, after the pre-read | {s['after_preread_s']:.2f} s "
          f"({s['reused_after_preread']} of {s['prompt_tokens']} prompt tokens reused) |")
    print(f"| the pre-read itself (idle time) | {s['preread_s']:.2f} s |")
    report_json(res, a.json)


if __name__ == "__main__":
    main()
