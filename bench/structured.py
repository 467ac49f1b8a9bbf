"""Structured generation: grammar overhead on decode, schema validity, tool-call validity.

    python bench/structured.py [MODEL] [--synthetic minicpm-2b] [--extract 50] [--tools 30]
                               [--rounds 3] [--json PATH]

1) Speed: the same kind of prompt with and without a JSON schema, interleaved (order swapped
   each round, a fresh prompt each run so the prompt cache does not flatter TTFT). Both runs
   see the same prompt text (the schema hint included); the free run generates as many tokens
   as the constrained one (ignore_eos). Reports decode tokens/s, TTFT and the ratio.
2) Validity: --extract extraction prompts with a 4-field schema (greedy): % that parse and
   validate (jsonschema), and % of fields equal to the source text.
3) Tools: --tools prompts over 3 tools, tool_choice "required" and "auto": % of produced calls
   whose arguments are valid JSON for their tool's schema, % naming the intended tool, and how
   often "auto" called a tool at all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import jsonschema

import minicpm
from minicpm import templates
from minicpm.tools import plan_chat

PERSON = {"type": "object", "additionalProperties": False,
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                         "city": {"type": "string"}, "email": {"type": "string"}},
          "required": ["name", "age", "city", "email"]}
RF = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
FIRST = ("Maria", "Tom", "Aisha", "Kenji", "Olga", "Pedro", "Lena", "Omar", "Grace", "Ivan")
LAST = ("Lopez", "Baker", "Khan", "Sato", "Petrova", "Silva", "Meyer", "Haddad", "Okafor", "Novak")
CITIES = ("Madrid", "Leeds", "Lahore", "Osaka", "Kazan", "Porto", "Bremen", "Beirut", "Lagos",
          "Brno")
SHAPES = ("{n} is {a} years old and lives in {c}; write to {e}.",
          "Contact: {n} ({e}), age {a}, based in {c}.",
          "From {c}, {n}, {a}, can be reached at {e}.",
          "Name: {n}. Age: {a}. City: {c}. Email: {e}.",
          "{e} belongs to {n}, a {a}-year-old from {c}.")

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time in an IANA timezone",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                       "required": ["timezone"]}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount between currencies",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"}},
            "required": ["amount", "from", "to"]}}},
]
TOOL_ASKS = {
    "get_weather": ("What's the weather in {c} in celsius?", "Is it raining in {c} right now?",
                    "How hot is it in {c}? Use fahrenheit."),
    "get_time": ("What time is it in {c}?", "Tell me the local time in {c}.",
                 "Which hour is it now in {c}?"),
    "convert_currency": ("Convert {a} euros to dollars.", "How much is {a} USD in yen?",
                         "Change {a} pounds into euros."),
}


def person(i: int) -> tuple[str, dict[str, Any]]:
    n = f"{FIRST[i % 10]} {LAST[(i * 3 + 1) % 10]}"
    p = {"name": n, "age": 20 + (i * 7) % 50, "city": CITIES[(i * 7 + 2) % 10],
         "email": f"{n.split()[0].lower()}{i}@example.com"}
    text = SHAPES[i % len(SHAPES)].format(n=n, a=p["age"], c=p["city"], e=p["email"])
    return f"Extract the person as JSON: {text}", p


def load(a: argparse.Namespace) -> tuple[minicpm.Engine, str]:
    if a.synthetic:
        from minicpm.bench import synthetic_gguf

        return (minicpm.load(synthetic_gguf(a.synthetic), n_ctx=1024, speculative="off"),
                f"{a.synthetic} shapes, random Q4_0")
    e = minicpm.load(a.model, n_ctx=2048)
    return e, e.info.label


def speed(e: minicpm.Engine, rounds: int, max_tokens: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"schema": [], "free": []}
    for r in range(rounds):
        order = ("schema", "free") if r % 2 == 0 else ("free", "schema")
        n_tokens = max_tokens
        for j, kind in enumerate(order):
            prompt, _ = person(1000 + 2 * r + j)  # a fresh prompt: TTFT is a real prefill
            msgs, _, _ = plan_chat(templates.normalize_messages(
                [{"role": "user", "content": prompt}]), {"response_format": RF})
            gs = e.stats().get("grammar", {})
            if kind == "schema":
                g = e.chat([{"role": "user", "content": prompt}], response_format=RF,
                           temperature=0, max_tokens=max_tokens)
            else:  # same prompt text, no grammar, as many tokens
                g = e.chat(msgs, temperature=0, max_tokens=n_tokens, ignore_eos=True)
            g.read()
            if kind == "schema":
                n_tokens = max(8, g.usage.completion_tokens)
            after = e.stats().get("grammar", {})
            grammar_ms = 1e3 * (after.get("seconds", 0) - gs.get("seconds", 0))
            runs[kind].append({"tokens": g.usage.completion_tokens,
                               "tok_s": g.usage.tokens_per_second,
                               "ttft_s": g.usage.time_to_first_token or 0.0,
                               "grammar_ms_per_token": grammar_ms / max(1, g.usage.completion_tokens),
                               "refused": after.get("refused", 0) - gs.get("refused", 0),
                               "full_masks": after.get("full_masks", 0) - gs.get("full_masks", 0)})
    med = {k: {m: statistics.median(x[m] for x in v)
               for m in ("tok_s", "ttft_s", "tokens", "grammar_ms_per_token")}
           for k, v in runs.items()}
    step_ms = 1e3 / med["free"]["tok_s"] if med["free"]["tok_s"] else float("nan")
    return {"median": med, "runs": runs,
            # Less noisy than the tok/s ratio on a busy machine: the grammar's own time per
            # token against one unconstrained decode step, measured in the same run.
            "grammar_share_of_step": med["schema"]["grammar_ms_per_token"] / step_ms,
            "decode_overhead": 1 - med["schema"]["tok_s"] / med["free"]["tok_s"],
            "ttft_ratio": med["schema"]["ttft_s"] / med["free"]["ttft_s"]}


def validity(e: minicpm.Engine, n: int) -> dict[str, Any]:
    ok = fields = stopped = 0
    bad: list[str] = []
    for i in range(n):
        prompt, truth = person(i)
        g = e.chat([{"role": "user", "content": prompt}], response_format=RF, temperature=0,
                   max_tokens=96)
        text = g.read()
        stopped += g.usage.finish_reason == "stop"
        try:
            obj = json.loads(text)
            jsonschema.validate(obj, PERSON)
        except (ValueError, jsonschema.ValidationError):
            bad.append(text[:120])
            continue
        ok += 1
        fields += sum(obj[k] == truth[k] for k in truth)
    return {"prompts": n, "valid": ok, "valid_pct": 100 * ok / n, "finished": stopped,
            "fields_correct_pct": 100 * fields / (4 * n), "invalid_samples": bad[:3]}


def tool_prompts(n: int) -> list[tuple[str, str]]:
    names = list(TOOL_ASKS)
    out = []
    for i in range(n):
        name = names[i % 3]
        ask = TOOL_ASKS[name][(i // 3) % 3]
        out.append((ask.format(c=CITIES[i % 10], a=10 + 5 * i), name))
    return out


def tool_calls(e: minicpm.Engine, n: int, choice: str) -> dict[str, Any]:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    turns_with_calls = calls = valid = intended = 0
    for prompt, want in tool_prompts(n):
        g = e.chat([{"role": "user", "content": prompt}], tools=TOOLS, tool_choice=choice,
                   temperature=0, max_tokens=80)
        g.read()
        produced = g.tool_calls
        turns_with_calls += bool(produced)
        for c in produced:
            calls += 1
            name = c["function"]["name"]
            intended += name == want
            try:
                jsonschema.validate(json.loads(c["function"]["arguments"]), schemas[name])
                valid += 1
            except (ValueError, KeyError, jsonschema.ValidationError):
                pass
    return {"prompts": n, "turns_with_calls": turns_with_calls,
            "called_pct": 100 * turns_with_calls / n, "calls": calls,
            "valid_calls_pct": 100 * valid / calls if calls else None,
            "intended_tool_pct": 100 * intended / calls if calls else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--synthetic", choices=["minicpm-2b", "minicpm-1b"], default=None,
                   help="random-weight file at real shapes: speed only")
    p.add_argument("--extract", type=int, default=50)
    p.add_argument("--tools", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--speed-tokens", type=int, default=64)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    load_before = open("/proc/loadavg").read().split()[:3]
    t0 = time.perf_counter()
    e, label = load(a)
    result: dict[str, Any] = {"model": label, "threads": e.info.extra.get("n_threads"),
                              "vocab": e.backend.llm.n_vocab()}
    result["speed"] = speed(e, a.rounds, a.speed_tokens)
    if not a.synthetic:
        result["validity"] = validity(e, a.extract)
        result["tools_required"] = tool_calls(e, a.tools, "required")
        result["tools_auto"] = tool_calls(e, a.tools, "auto")
    e.close()
    result["loadavg_before"] = load_before
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    table(result)
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            f.write(text)
    return 0


def table(r: dict[str, Any]) -> None:
    s = r["speed"]["median"]
    print(f"\n{r['model']} (vocab {r['vocab']}, {r['threads']} threads; load "
          f"{' '.join(r['loadavg_before'])} → {' '.join(r['loadavg_after'])})", file=sys.stderr)
    print(f"{'':24}{'decode tok/s':>14}{'TTFT s':>10}{'tokens':>8}", file=sys.stderr)
    for k in ("free", "schema"):
        print(f"{k:24}{s[k]['tok_s']:>14.1f}{s[k]['ttft_s']:>10.3f}{s[k]['tokens']:>8.0f}",
              file=sys.stderr)
    print(f"grammar decode overhead: {100 * r['speed']['decode_overhead']:.1f} % (tok/s), "
          f"{s['schema']['grammar_ms_per_token']:.2f} ms/token in the grammar = "
          f"{100 * r['speed']['grammar_share_of_step']:.1f} % of a decode step; "
          f"TTFT ratio {r['speed']['ttft_ratio']:.2f}", file=sys.stderr)
    if "validity" in r:
        v = r["validity"]
        print(f"extraction: {v['valid']}/{v['prompts']} parse and validate "
              f"({v['valid_pct']:.0f} %), fields equal to the source {v['fields_correct_pct']:.0f} %",
              file=sys.stderr)
        for k in ("tools_required", "tools_auto"):
            t = r[k]
            print(f"{k}: called in {t['turns_with_calls']}/{t['prompts']} turns, "
                  f"{t['calls']} calls, valid {t['valid_calls_pct']} %, intended tool "
                  f"{t['intended_tool_pct']} %", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
