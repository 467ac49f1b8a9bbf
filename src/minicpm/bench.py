"""`minicpm bench`: our llama.cpp engine next to raw llama-cpp-python on the same GGUF.

Each measurement runs in its own subprocess (so peak RSS is that engine's alone), alternating
ours/raw so that machine noise hits both alike; the table shows medians."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

FILLER = ("The history of computing is a story of abstraction: each layer hides the details of "
          "the one below it so that people can think about larger problems. ")


UNRELATED = "What is a list comprehension?"
FOLLOW_UP = " To sum up, in one sentence:"


def time_tokens(tokens: Any, n_new: int) -> tuple[float, float, float, int]:
    """Run a token stream for at most ``n_new`` tokens: (start, first token, end, count), on
    ``time.perf_counter``. Both sides of every comparison are timed by this one loop."""
    start = time.perf_counter()
    first, n = None, 0
    for _tok in tokens:
        first = first or time.perf_counter()
        n += 1
        if n >= n_new:
            break
    end = time.perf_counter()
    return start, first or end, end, n


def add_arguments(p: argparse.ArgumentParser, json_help: str | None = None,
                  json_default: str | None = None) -> argparse.ArgumentParser:
    """The options of ``minicpm bench`` and bench/llamacpp.py (one list for both)."""
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--synthetic", default=None, choices=["minicpm-2b", "minicpm-1b"],
                   help="bench a random-weight MiniCPM GGUF of that shape (written once)")
    p.add_argument("--qtype", default="q4_0", choices=["q4_0", "q8_0", "f16"])
    p.add_argument("--json", default=json_default,
                   help=json_help or "also write results to this JSON file")
    return p


def _prompt_tokens(tokenize, n: int) -> list[int]:
    toks = tokenize(FILLER * (n // 10 + 2))
    return toks[:n]


def _worker(kind: str, model: str | None, n_prompt: int, n_new: int, threads: int | None) -> dict:
    from .catalogue import resolve

    path = str(resolve(model).path)
    t0 = time.perf_counter()
    if kind == "ours":
        from .api import load

        engine = load(path, n_threads=threads, n_ctx=max(1024, n_prompt + n_new + 8))
        load_s = time.perf_counter() - t0
        backend = engine.backend
        prompt = _prompt_tokens(lambda t: backend.tokenize(t, add_bos=True), n_prompt)
        text = backend.llm.detokenize(prompt[1:]).decode("utf-8", "replace")  # type: ignore[attr-defined]
        gen = engine.complete(text, temperature=0, max_tokens=n_new, ignore_eos=True)
        start = time.perf_counter()
        gen.read()
        end = time.perf_counter()
        u = gen.usage
        res = {"prompt_tokens": u.prompt_tokens, "new_tokens": u.completion_tokens,
               "ttft_s": u.time_to_first_token, "prefill_tps": u.prefill_tokens_per_second,
               "decode_tps": u.tokens_per_second, "wall_s": end - start}
        # A short unrelated request, then a follow-up of the first prompt: the prompt cache
        # brings the first prompt's KV back instead of prefilling it again.
        engine.complete(UNRELATED, temperature=0, max_tokens=2).read()
        follow = engine.complete(text + FOLLOW_UP, temperature=0, max_tokens=1)
        follow.read()
        res["followup_ttft_s"] = follow.usage.time_to_first_token
        res["cache"] = engine.stats()
    else:
        import llama_cpp

        from .backends.llamacpp import physical_cores

        n_threads = threads or physical_cores()
        llm = llama_cpp.Llama(path, n_ctx=max(1024, n_prompt + n_new + 8), n_threads=n_threads,
                              n_threads_batch=n_threads, verbose=False)
        load_s = time.perf_counter() - t0
        prompt = _prompt_tokens(lambda t: llm.tokenize(t.encode(), add_bos=True), n_prompt)
        # Round-trip through text like ours does, so both see the same tokens.
        prompt = llm.tokenize(llm.detokenize(prompt[1:]), add_bos=True)
        start, first, end, n = time_tokens(
            llm.generate(prompt, temp=0.0, top_k=40, top_p=0.95, min_p=0.0), n_new)
        ttft = first - start
        res = {"prompt_tokens": len(prompt), "new_tokens": n, "ttft_s": ttft,
               "prefill_tps": len(prompt) / ttft, "decode_tps": (n - 1) / (end - first),
               "wall_s": end - start}
        for _tok in llm.generate(llm.tokenize(UNRELATED.encode(), add_bos=True), temp=0.0):
            break
        follow_ids = llm.tokenize(llm.detokenize(prompt[1:]) + FOLLOW_UP.encode(), add_bos=True)
        t0 = time.perf_counter()
        for _tok in llm.generate(follow_ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.0):
            break
        res["followup_ttft_s"] = time.perf_counter() - t0
    res["load_s"] = load_s
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the address space made at exec;
    ru_maxrss on Linux carries over the parent's peak at fork, which inflates it after the
    parent wrote a multi-GB synthetic model."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(model: str | None, n_prompt: int, n_new: int, repeats: int,
        threads: int | None) -> dict[str, Any]:
    from .catalogue import resolve

    resolved = resolve(model)
    runs: dict[str, list[dict]] = {"ours": [], "raw": []}
    for i in range(repeats):
        # Swap who goes first each round: the first process of a pair meets a colder page cache.
        for kind in (("ours", "raw") if i % 2 == 0 else ("raw", "ours")):
            cmd = [sys.executable, "-m", "minicpm.bench", "--worker", kind,
                   "--prompt-tokens", str(n_prompt), "--new-tokens", str(n_new)]
            if model:
                cmd += ["--model", str(model)]
            if threads:
                cmd += ["--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for kind, rs in runs.items():
        summary[kind] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "cache"}
    ratio = {k: summary["ours"][k] / summary["raw"][k]
             for k in ("decode_tps", "prefill_tps", "followup_ttft_s") if summary["raw"][k]}
    bw = copy_bandwidth()
    weights = os.path.getsize(resolved.path)
    return {"model": resolved.name + (" (stand-in)" if resolved.stand_in else ""),
            "copy_bandwidth_gbs": bw / 1e9, "weights_bytes": weights,
            "decode_bound_tps": bw / weights,
            "path": str(resolved.path), "machine": machine(), "repeats": repeats,
            "prompt_tokens": n_prompt, "new_tokens": n_new, "median": summary,
            "cache": runs["ours"][-1].get("cache", {}),
            "ours_over_raw": ratio, "runs": runs}


# Real MiniCPM shapes (config.json of MiniCPM-2B-sft and MiniCPM-1B-sft), for random-weight
# speed runs when no real file is at hand: speed depends on shapes and quantization, not values.
SHAPES = {
    "minicpm-2b": dict(vocab_size=122753, hidden_size=2304, num_hidden_layers=40,
                       num_attention_heads=36, num_key_value_heads=36, intermediate_size=5760),
    "minicpm-1b": dict(vocab_size=73440, hidden_size=1536, num_hidden_layers=52,
                       num_attention_heads=24, num_key_value_heads=8, intermediate_size=3840),
}


def synthetic_gguf(shape: str, qtype: str = "q4_0") -> str:
    """A random-weight MiniCPM GGUF at real shape, cached under ~/.cache/jupyter-minicpm/bench."""
    from pathlib import Path

    from .testing.gguf_writer import write_gguf
    from .testing.tiny import TinyConfig, random_weights

    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    path = cache / "jupyter-minicpm" / "bench" / f"{shape}-random-{qtype}.gguf"
    if not path.exists():
        cfg = TinyConfig(**SHAPES[shape], dim_model_base=256, max_position_embeddings=4096)
        print(f"writing {path} (random weights, once)", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        write_gguf(cfg, random_weights(cfg, seed=0), tmp, dtype=qtype, name=f"{shape} random")
        tmp.rename(path)
    return str(path)


def copy_bandwidth(n_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Measured memory bandwidth in bytes/s (bytes read + written by a large numpy copy)."""
    import numpy as np

    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def print_table(result: dict[str, Any]) -> None:
    m = result["median"]
    print(f"model: {result['model']}   machine: {result['machine']}")
    print(f"prompt {result['prompt_tokens']} tokens, {result['new_tokens']} new tokens, "
          f"median of {result['repeats']}")
    print(f"{'engine':24s} {'decode tok/s':>12s} {'prefill tok/s':>14s} {'TTFT ms':>8s} "
          f"{'follow-up TTFT ms':>17s} {'peak RSS MB':>12s}")
    for kind, label in (("ours", "minicpm (llama.cpp)"), ("raw", "raw llama-cpp-python")):
        r = m[kind]
        print(f"{label:24s} {r['decode_tps']:12.1f} {r['prefill_tps']:14.1f} "
              f"{r['ttft_s'] * 1000:8.1f} {r['followup_ttft_s'] * 1000:17.1f} "
              f"{r['peak_rss_mb']:12.0f}")
    ratio = result["ours_over_raw"]
    print(f"{'ours / raw':24s} {ratio.get('decode_tps', 0):12.3f} "
          f"{ratio.get('prefill_tps', 0):14.3f} {'':8s} {ratio.get('followup_ttft_s', 0):17.3f}")
    print("(follow-up: the same prompt plus a few words, after a short unrelated request)")
    c = result.get("cache") or {}
    if c:
        pc, kv = c["prompt_cache"], c["kv"]
        print(f"ours, prompt cache: {pc['hits']} hits of {pc['requests']} requests, "
              f"{pc['tokens_reused']} of {pc['prompt_tokens']} prompt tokens reused, "
              f"{pc['used_mb']:.1f} of {pc['budget_mb']:.0f} MB used ({pc['snapshots']} "
              f"snapshots); KV {kv['type']} {kv['context_mb']:.0f} MB; RSS {c.get('rss_mb', 0):.0f} MB")
    print(f"{'bandwidth bound':24s} {result['decode_bound_tps']:12.1f}   "
          f"({result['weights_bytes'] / 1e6:.0f} MB of weights per token over "
          f"{result['copy_bandwidth_gbs']:.1f} GB/s measured copy bandwidth; KV cache ignored)")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "synthetic", None):
        args.model = synthetic_gguf(args.synthetic, getattr(args, "qtype", "q4_0"))
    result = run(args.model, args.prompt_tokens, args.new_tokens, args.repeats, args.threads)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["ours", "raw"], required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    print(json.dumps(_worker(a.worker, a.model, a.prompt_tokens, a.new_tokens, a.threads)))
