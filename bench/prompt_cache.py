"""The prompt cache: two alternating notebook conversations, ours vs raw llama-cpp-python.

    python bench/prompt_cache.py [MODEL] [--synthetic minicpm-2b] [--context-tokens 2000]
                                 [--turns 3] [--reply-tokens 24] [--json PATH]
    python bench/prompt_cache.py --first-save [--kv-type f32] [--context-tokens 3000]

``--first-save`` times only a conversation's first snapshot save (what the request that
diverges from it waits for): into a fresh allocation vs into the spare buffer touched after
the previous answer, alternating, on one live state.

Each conversation holds its own ~2,000-token notebook; turns alternate X1, u, Y1, u, X2, u, Y2…
where u is a short unrelated request. Both engines see the same prompt text (a MiniCPM-style
template, the engine's own greedy replies in the history) through raw completion. Per
follow-up turn: TTFT of ours (prompt cache on, default settings), TTFT of raw llama-cpp-python
(which keeps one sequence, so it prefills the whole context again), and "new only": raw
llama-cpp-python timing only the prefill of the tokens the previous turn did not hold, at the
right position (the floor any cache can reach). Targets: ours ≤ 1.3× new-only, ≥ 90 % of prompt
tokens served from the cache, RSS growth within the cache budget. Each engine runs in its own
subprocess (its own peak RSS); ours and raw alternate who goes first over --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CELL = ("# cell {i}: load and clean the {name} table\n"
        "df_{i} = pd.read_csv('data/{name}_{i}.csv', parse_dates=['when'])\n"
        "df_{i} = df_{i}.dropna(subset=['value']).query('value > {i}')\n"
        "summary_{i} = df_{i}.groupby('{name}')['value'].agg(['mean', 'std', 'count'])\n"
        "ax = summary_{i}['mean'].plot(kind='bar', title='{name} {i}')\n")
NAMES = ("sales", "weather", "sensors", "visits", "orders", "trips")
QUESTIONS = ("What does this notebook do?", "Why could cell 3 fail?",
             "How do I speed up the groupby?", "Add a docstring to the plot code.")
UNRELATED = ("What is a Python list comprehension?", "Name a sorting algorithm.",
             "What is 17 * 3?", "Say hello.", "What is JSON?", "Define recursion.")


def notebook(tokenize: Any, which: int, n_tokens: int) -> str:
    """Deterministic notebook text of about ``n_tokens`` tokens (different per conversation)."""
    cells: list[str] = []
    i = 0
    while True:
        cells.append(CELL.format(i=i + 100 * which, name=NAMES[(i + which) % len(NAMES)]))
        i += 1
        text = "".join(cells)
        if i % 4 == 0 and len(tokenize(text)) >= n_tokens:
            return text


def render(history: list[tuple[str, str]], question: str, system: str = "") -> str:
    """MiniCPM's template: system text as a bare prefix, <用户> user turn, <AI> reply."""
    out = system
    for q, a in history:
        out += f"<用户>{q}<AI>{a}"
    return out + f"<用户>{question}<AI>"


def script(n_turns: int) -> list[tuple[str, int, str]]:
    """(conversation 'X'|'Y'|'u', turn number, question)."""
    steps: list[tuple[str, int, str]] = []
    for t in range(n_turns):
        for conv in ("X", "Y"):
            steps.append((conv, t, QUESTIONS[t % len(QUESTIONS)]))
            steps.append(("u", len(steps), UNRELATED[len(steps) % len(UNRELATED)]))
    return steps


def peak_rss_mb() -> float:
    from minicpm.bench import peak_rss_mb as peak

    return peak()


def _worker(kind: str, path: str, ctx_tokens: int, n_turns: int, reply_tokens: int,
            threads: int | None, cache_mb: float | None) -> dict[str, Any]:
    from minicpm.backends.llamacpp import physical_cores

    n_ctx = 4096
    threads = threads or physical_cores()
    if kind == "ours":
        import minicpm

        opts: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": threads}
        if cache_mb is not None:
            opts["cache_mb"] = cache_mb
        engine = minicpm.load(path, backend="llama.cpp", **opts)
        llm = engine.backend.llm  # type: ignore[attr-defined]
    else:
        import llama_cpp

        llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              verbose=False)

    def tokenize(text: str) -> list[int]:
        return llm.tokenize(text.encode(), add_bos=True, special=True)

    system = {c: "You help with this notebook:\n" + notebook(tokenize, w, ctx_tokens)
              for w, c in enumerate("XY")}
    history: dict[str, list[tuple[str, str]]] = {"X": [], "Y": []}
    prev_seq: dict[str, list[int]] = {}
    turns = []
    rss_after_first = 0.0
    for conv, t, question in script(n_turns):
        sys_text = system.get(conv, "")
        text = render(history.get(conv, []), question, sys_text)
        ids = tokenize(text)
        row: dict[str, Any] = {"conv": conv, "turn": t, "prompt_tokens": len(ids)}
        start = time.perf_counter()
        if kind == "ours":
            g = engine.complete(text, temperature=0, max_tokens=reply_tokens, ignore_eos=True)
            reply = g.read()
            row["ttft_s"] = g.usage.time_to_first_token
            last = engine.stats()["prompt_cache"]["last"]
            row["reused"] = last["reused"]
            row["source"] = last["source"]
            row["stages"] = {k: last[k] for k in ("save_s", "restore_s", "prefill_s")}
        else:
            out: list[int] = []
            first = None
            for tok in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.0):
                first = first or time.perf_counter()
                out.append(tok)
                if len(out) >= reply_tokens:
                    break
            row["ttft_s"] = first - start
            reply = llm.detokenize(out).decode("utf-8", "replace")
            if conv in prev_seq:
                # New-only floor: keep what the previous turn of this conversation held.
                from minicpm.backends.prompt_cache import common_prefix

                m = min(common_prefix(prev_seq[conv], ids), len(ids) - 1)
                llm.n_tokens = m
                t0 = time.perf_counter()
                llm.eval(ids[m:])
                row["new_only_s"] = time.perf_counter() - t0
                row["new_tokens"] = len(ids) - m
            if conv != "u":
                prev_seq[conv] = ids + out
        if conv != "u":
            history[conv].append((question, reply.strip()))
        turns.append(row)
        if not rss_after_first:
            rss_after_first = peak_rss_mb()
    res: dict[str, Any] = {"turns": turns, "peak_rss_mb": peak_rss_mb(),
                           "rss_after_first_turn_mb": rss_after_first}
    if kind == "ours":
        res["stats"] = engine.stats()
        res["info"] = engine.info.extra
    return res


def run(args: argparse.Namespace, path: str) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "raw": []}
    for i in range(args.repeats):
        for kind in (("ours", "raw") if i % 2 == 0 else ("raw", "ours")):
            cmd = [sys.executable, __file__, "--worker", kind, path,
                   "--context-tokens", str(args.context_tokens), "--turns", str(args.turns),
                   "--reply-tokens", str(args.reply_tokens)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.cache_mb is not None:
                cmd += ["--cache-mb", str(args.cache_mb)]
            print(f"  {kind} run {i + 1}/{args.repeats}", file=sys.stderr)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    rows = []
    n = len(runs["ours"][0]["turns"])
    for i in range(n):
        o = [r["turns"][i] for r in runs["ours"]]
        w = [r["turns"][i] for r in runs["raw"]]
        row = {k: o[0][k] for k in ("conv", "turn", "prompt_tokens")}
        row["ours_ttft_s"] = statistics.median(x["ttft_s"] for x in o)
        row["raw_ttft_s"] = statistics.median(x["ttft_s"] for x in w)
        row["reused"] = o[0]["reused"]
        row["source"] = o[0]["source"]
        row["stages"] = {k: statistics.median(x["stages"][k] for x in o)
                         for k in o[0]["stages"]}
        if "new_only_s" in w[0]:
            row["new_tokens"] = w[0]["new_tokens"]
            row["new_only_s"] = statistics.median(x["new_only_s"] for x in w)
            row["ours_over_new_only"] = row["ours_ttft_s"] / row["new_only_s"]
        rows.append(row)
    follow = [r for r in rows if r["conv"] != "u" and r["turn"] > 0]
    stats = runs["ours"][-1]["stats"]
    pc = stats["prompt_cache"]
    ours_rss = statistics.median(r["peak_rss_mb"] for r in runs["ours"])
    raw_rss = statistics.median(r["peak_rss_mb"] for r in runs["raw"])
    return {
        "turns": rows,
        "follow_up_reuse": sum(r["reused"] for r in follow) / sum(r["prompt_tokens"] for r in follow),
        "worst_ours_over_new_only": max(r["ours_over_new_only"] for r in follow),
        "median_ours_over_raw_follow_up": statistics.median(
            r["ours_ttft_s"] / r["raw_ttft_s"] for r in follow),
        "peak_rss_mb": {"ours": ours_rss, "raw": raw_rss, "difference": ours_rss - raw_rss,
                        "cache_budget_mb": pc["budget_mb"], "cache_used_mb": pc["used_mb"]},
        "copy_cost": {
            "saves": pc["saves"], "restores": pc["restores"],
            "save_s_each": pc["save_seconds"] / max(1, pc["saves"]),
            "restore_s_each": pc["restore_seconds"] / max(1, pc["restores"]),
            "snapshot_mb_each": pc["used_mb"] / max(1, pc["snapshots"]),
        },
        "stats": stats,
    }


def print_table(model: str, s: dict[str, Any]) -> None:
    print(f"model: {model}")
    print(f"{'turn':6s} {'prompt':>6s} {'reused':>6s} {'new':>5s} {'ours TTFT':>10s} "
          f"{'raw TTFT':>9s} {'new-only':>9s} {'ours/new-only':>13s}  "
          f"{'ours: save':>10s} {'restore':>7s} {'prefill':>7s}")
    for r in s["turns"]:
        name = r["conv"] + (str(r["turn"] + 1) if r["conv"] != "u" else "")
        new = r.get("new_tokens", "")
        no = f"{r['new_only_s']:9.3f}" if "new_only_s" in r else f"{'':9s}"
        ratio = f"{r['ours_over_new_only']:13.2f}" if "ours_over_new_only" in r else f"{'':13s}"
        st = r["stages"]
        print(f"{name:6s} {r['prompt_tokens']:6d} {r['reused']:6d} {new!s:>5s} "
              f"{r['ours_ttft_s']:10.3f} {r['raw_ttft_s']:9.3f} {no} {ratio}  "
              f"{st['save_s']:10.3f} {st['restore_s']:7.3f} {st['prefill_s']:7.3f}")
    c, m = s["copy_cost"], s["peak_rss_mb"]
    print(f"follow-up prompt tokens from the cache: {100 * s['follow_up_reuse']:.1f} %   "
          f"worst ours/new-only: {s['worst_ours_over_new_only']:.2f}   "
          f"median ours/raw follow-up TTFT: {s['median_ours_over_raw_follow_up']:.3f}")
    print(f"snapshot copy: save {c['save_s_each'] * 1000:.1f} ms, restore "
          f"{c['restore_s_each'] * 1000:.1f} ms for {c['snapshot_mb_each']:.1f} MB each")
    print(f"peak RSS MB: ours {m['ours']:.0f}, raw {m['raw']:.0f} (+{m['difference']:.0f}; "
          f"cache budget {m['cache_budget_mb']:.0f}, used {m['cache_used_mb']:.0f})")


def first_save(path: str, ctx_tokens: int, kv_type: str, repeats: int,
               threads: int | None) -> dict[str, Any]:
    """A conversation's first snapshot save, as the request that diverges from it pays it:
    into a fresh allocation (before) or into the spare buffer touched in idle time after the
    previous answer (now). Same live state every time, the two alternate."""
    import minicpm

    engine = minicpm.load(path, backend="llama.cpp", n_ctx=4096, kv_type=kv_type,
                          n_threads=threads)
    kv = engine.backend.kv  # type: ignore[attr-defined]
    llm = engine.backend.llm  # type: ignore[attr-defined]
    text = "You help with this notebook:\n" + notebook(
        lambda t: llm.tokenize(t.encode(), add_bos=True, special=True), 0, ctx_tokens)
    engine.complete(text, temperature=0, max_tokens=4, ignore_eos=True).read()
    rows: list[dict[str, Any]] = []
    for r in range(repeats):
        for mode in ("fresh", "spare") if r % 2 == 0 else ("spare", "fresh"):
            kv.cache.clear()
            kv._drop_spare()
            warm = None
            if mode == "spare":
                t0 = time.perf_counter()
                kv.warm_spare()
                kv._warming.join()  # in the server this runs while the user reads the answer
                warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert kv.save_live()
            rows.append({"mode": mode, "save_s": time.perf_counter() - t0, "warm_s": warm})
    snap = kv.cache.snapshots()[0]
    out = {"kv_type": kv_type, "tokens": len(snap.tokens),
           "state_mb": round(snap.data.nbytes / 2**20, 1), "rows": rows}
    for mode in ("fresh", "spare"):
        out[f"{mode}_save_s"] = statistics.median(x["save_s"] for x in rows if x["mode"] == mode)
    out["warm_s"] = statistics.median(x["warm_s"] for x in rows if x["warm_s"] is not None)
    engine.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--worker", choices=["ours", "raw"])
    p.add_argument("--synthetic", default=None, choices=["minicpm-2b", "minicpm-1b"])
    p.add_argument("--context-tokens", type=int, default=2000)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--reply-tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache-mb", type=float, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--first-save", action="store_true",
                   help="only time a conversation's first snapshot save: fresh buffer vs spare")
    p.add_argument("--kv-type", default="auto", help="with --first-save (f32: twice f16's bytes)")
    a = p.parse_args()
    if a.worker:
        print(json.dumps(_worker(a.worker, a.model, a.context_tokens, a.turns, a.reply_tokens,
                                 a.threads, a.cache_mb)))
        return 0
    from minicpm.bench import synthetic_gguf
    from minicpm.catalogue import resolve

    if a.synthetic:
        path, label = synthetic_gguf(a.synthetic), f"{a.synthetic} shapes, random Q4_0"
    else:
        r = resolve(a.model)
        path, label = str(r.path), r.name + (" (stand-in)" if r.stand_in else "")
    if a.first_save:
        res = first_save(path, a.context_tokens, a.kv_type, max(2, a.repeats), a.threads)
        print(f"| model | KV | tokens | state MB | first save, fresh buffer s | into the spare s "
              f"| spare warm-up (idle time) s |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n"
              f"| {label} | {res['kv_type']} | {res['tokens']} | {res['state_mb']} | "
              f"{res['fresh_save_s']:.3f} | {res['spare_save_s']:.3f} | {res['warm_s']:.3f} |")
        print(json.dumps(res))
        return 0
    s = summarize(run(a, path))
    print_table(label, s)
    out = a.json or os.path.join(os.path.dirname(__file__), "results",
                                 f"prompt_cache-{a.synthetic or 'model'}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"model": label, "args": vars(a), **s}, f, indent=1)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
