"""The completion benchmark's replay: notebooks read from percent-format scripts, typed key by
key as JupyterLab's provider would fire requests (``run_model``), and the engine-only replay
(``engine_only``). See completion.py for the typing model."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from completion_clients import Chat, Inline, Naive, start_server
from completion_report import pct, summarize

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ["sales_eda.py", "churn_model.py", "timeseries.py"]


def read_cells(path: Path) -> list[dict[str, str]]:
    """A percent-format script (``# %%`` / ``# %% [markdown]``) → notebook cells."""
    cells: list[dict[str, str]] = []
    kind, lines = None, []
    for line in path.read_text().splitlines() + ["# %%"]:
        if line.startswith("# %%"):
            if kind is not None:
                src = "\n".join(lines).strip("\n")
                if kind == "markdown":
                    src = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#")
                                    for ln in src.splitlines())
                cells.append({"kind": kind, "source": src})
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    return cells


def keystrokes(code: str) -> list[tuple[str, bool]]:
    """(text after the keystroke, is it the last key of a line). Indentation comes with Enter,
    as the editor's auto-indent gives it."""
    out: list[tuple[str, bool]] = []
    typed = ""
    lines = code.split("\n")
    for li, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip(" "))]
        if li > 0:
            typed += "\n" + indent
            out.append((typed, False))
        for ci, ch in enumerate(line[len(indent):]):
            typed += ch
            out.append((typed, ci == len(line) - len(indent) - 1))
    return out


def jupyterlab_would_fire(text: str) -> bool:
    """JupyterLab's automatic inline request: not when the line before the cursor is blank."""
    return bool(text.rsplit("\n", 1)[-1].strip())


def after_enter(text: str) -> bool:
    """The keystroke was Enter: the cursor is on a fresh line (indentation only)."""
    return "\n" in text and not text.rsplit("\n", 1)[-1].strip()


def after_opener(text: str) -> bool:
    """The line above ends a block opener (labextension/src/freshLine.ts, comments aside)."""
    above = text.rsplit("\n", 1)[0].rsplit("\n", 1)[-1].split("#", 1)[0].rstrip()
    return above.endswith(":")


def type_cell(inline: Inline, before: list[dict[str, str]], code: str, args: Any,
              label: str, chat: Any | None, chat_times: list[float], chat_seq: list[int]) -> int:
    """Type one cell; returns the number of keystrokes."""
    keys = keystrokes(code)
    cur: str | None = None
    next_chat = time.perf_counter() + args.chat_every_s
    t = time.perf_counter()
    fresh = not args.no_fresh_line and isinstance(inline, Inline)
    for k, (text, eol) in enumerate(keys):
        # the keystroke
        now = time.perf_counter()
        if t > now:
            time.sleep(t - now)
        enter = after_enter(text)
        if cur is not None:
            rec = inline.recs[cur]
            typed = text[len(rec["prefix"]):] if text.startswith(rec["prefix"]) else None
            if fresh and enter and typed and rec["text"].startswith(typed):
                rec["enter_key"], rec["typed"] = True, typed  # kept through the newline
            else:
                inline.stop(cur)  # typing on: the old suggestion is stale
                cur = None
        last = text[-1:]
        gap = args.keystroke_ms
        if enter and fresh:
            gap = args.enter_pause_ms  # a look at the new line
        if enter:
            inline.enter_keys = getattr(inline, "enter_keys", 0) + 1
        if eol:
            gap = args.line_pause_ms
        elif last in "(.=":
            gap = args.think_ms
        if k == len(keys) - 1:
            gap = args.line_pause_ms
        t += gap / 1000
        if cur is None and gap > args.debounce_ms and (
                jupyterlab_would_fire(text) or (fresh and enter)):
            fire = time.perf_counter() + args.debounce_ms / 1000
            time.sleep(max(0.0, fire - time.perf_counter()))
            mode = "block" if fresh and enter and after_opener(text) else None
            cur = inline.send(text, before, args, label, mode)
            inline.recs[cur]["enter_key"] = enter
        if chat is not None and time.perf_counter() >= next_chat:
            # A sidebar question while typing goes on: answered in a thread.
            chat_seq[0] += 1
            n = chat_seq[0]
            threading.Thread(target=lambda n=n: chat_times.append(
                chat.ask(n, args.chat_tokens)), daemon=True).start()
            next_chat = time.perf_counter() + args.chat_every_s
    return len(keys)


def run_model(model: str, label: str, args: Any, peer: bool) -> list[dict[str, Any]]:
    """Type the cells with our socket (and, with ``peer``, each cell again with the naive
    client, alternating who goes first); one row per client."""
    proc, url = start_server(model, args.n_ctx, args.threads)
    kinds = ["ours", "naive"] if peer else ["ours"]
    try:
        clients: dict[str, Any] = {"ours": Inline(url)}
        if peer:
            clients["naive"] = Naive(url)
        chat = Chat(url)
        busy_chat = Chat(url)
        idle = {k: [] for k in kinds}
        typing = {k: [] for k in kinds}
        keys = dict.fromkeys(kinds, 0)
        seconds = dict.fromkeys(kinds, 0.0)
        seq = [0]
        warm = read_cells(HERE / "notebooks" / NOTEBOOKS[0])
        clients["ours"].send("import ", warm[:2], args, "warm-up")  # page the model in
        chat.ask(999, 2)
        clients["ours"].wait_all(600)
        clients["ours"].recs.clear()
        turn = 0
        cold_ms: list[float] = []
        for nb in NOTEBOOKS:
            cells = read_cells(HERE / "notebooks" / nb)
            code_idx = [i for i, c in enumerate(cells) if c["kind"] == "code"][-args.cells:]
            # Opening the notebook: one request prefills its context (timed: the cold cost).
            ours = clients["ours"]
            rid = ours.send("import ", cells[:code_idx[0]], args, "cold")
            ours.wait_all(900)
            cold_ms.append((ours.recs[rid]["end"] - ours.recs[rid]["sent"]) * 1000)
            del ours.recs[rid]
            for ci in code_idx:
                order = kinds if turn % 2 == 0 else kinds[::-1]
                turn += 1
                for kind in order:
                    t0 = time.perf_counter()
                    seq[0] += 1
                    idle[kind].append(chat.ask(seq[0], args.chat_tokens))  # nobody typing
                    keys[kind] += type_cell(clients[kind], cells[:ci], cells[ci]["source"],
                                            args, f"{nb}#{ci}", busy_chat, typing[kind], seq)
                    clients[kind].wait_all(300)
                    time.sleep(0.5)
                    seconds[kind] += time.perf_counter() - t0
        rows = []
        for kind in kinds:
            recs = list(clients[kind].recs.values())
            name = label if kind == "ours" else f"{label}, naive peer"
            out = summarize(name, recs, idle[kind], typing[kind], keys[kind], seconds[kind],
                            getattr(clients[kind], "enter_keys", 0))
            out["client"] = kind
            out["cold_notebook_ms"] = cold_ms
            out["raw"] = [{"label": r["label"], "stopped": r["stopped"],
                           "first_ms": None if r["first"] is None
                           else (r["first"] - r["sent"]) * 1000,
                           "end_ms": None if r["end"] is None else (r["end"] - r["sent"]) * 1000,
                           "frame": r["frame"]} for r in recs]
            rows.append(out)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def engine_only(model: str, label: str, args: Any) -> dict[str, Any]:
    """In-process, no server, no timing gaps: for each notebook, the cold prefill of its
    context once, then one request per keystroke of its last code cell (first ``--keys``
    keystrokes) timed to the first generated token (max_tokens=1), and every 8th keystroke a
    whole one-line suggestion. Isolates the engine + prompt cache from typing and the network."""
    import minicpm
    from minicpm import completion

    engine = minicpm.load(model, n_ctx=args.n_ctx, n_threads=args.threads)
    counter = completion.TokenCounter(engine.count_tokens)
    cold, warm, line, reused, prompt_tokens = [], [], [], 0, 0

    def once(req: Any, max_tokens: int) -> tuple[float, float, int, int]:
        before = engine.stats().get("prompt_cache", {}).get("tokens_reused", 0)
        t0 = time.perf_counter()
        prompt, sugg, gen = completion.complete(engine, req, max_tokens=max_tokens,
                                                counter=counter)
        t1 = time.perf_counter()  # the prompt is built and counted
        for delta in gen:
            if sugg.feed(delta):
                break
        gen.close()
        end = time.perf_counter()
        ttft = gen.usage.time_to_first_token  # prefill + the first token, shown or not
        first_s = (t1 - t0) + ttft if ttft is not None else end - t0
        after = engine.stats().get("prompt_cache", {}).get("tokens_reused", 0)
        return first_s, end - t0, after - before, gen.usage.prompt_tokens

    try:
        for nb in NOTEBOOKS:
            cells = read_cells(HERE / "notebooks" / nb)
            ci = [i for i, c in enumerate(cells) if c["kind"] == "code"][-1]
            before = [completion.Cell(c["kind"], c["source"]) for c in cells[:ci]]
            keys = [k for k, _ in keystrokes(cells[ci]["source"])
                    if jupyterlab_would_fire(k)][: args.keys]
            f, t, r, n = once(completion.CompletionRequest("import ", before=before), 1)
            cold.append(t * 1000)
            for j, text in enumerate(keys):
                req = completion.CompletionRequest(text, before=before, mode="line")
                f, t, r, n = once(req, 1)
                warm.append(f * 1000)
                reused, prompt_tokens = reused + r, prompt_tokens + n
                if j % 8 == 7:
                    f, t, r, n = once(req, args.max_tokens)
                    line.append(t * 1000)
                    reused, prompt_tokens = reused + r, prompt_tokens + n
    finally:
        engine.close()
    return {"model": label, "mode": "engine only", "cold_prefill_ms": cold,
            "first_token_ms": {"p50": pct(warm, 50), "p95": pct(warm, 95), "n": len(warm)},
            "one_line_ms": {"p50": pct(line, 50), "p95": pct(line, 95), "n": len(line)},
            "reused_share": reused / prompt_tokens if prompt_tokens else None,
            "warm_over_cold": (pct(warm, 50) or 0) / statistics.median(cold) if cold else None}
