"""KV cache types: peak memory on MiniCPM-2B shapes, and what they do to the output.

    python bench/kv_memory.py rss [--prompt-tokens 3000] [--synthetic minicpm-2b]
    python bench/kv_memory.py quality [MODEL] [--tiny]

rss: peak RSS (VmHWM) of one process that loads the synthetic MiniCPM-2B Q4_0 file
(n_ctx 4096), prefills a 3,000-token prompt and decodes 8 tokens, then a follow-up adds 24
tokens (its first token timed: what a cached follow-up pays): raw llama-cpp-python with its
defaults, ours with kv_type f16 / q8_0 / q4_0, ours with the defaults (q8_0 K, f16 V), and ours
with low_memory=True. Each row also gives what the setting costs in speed: prefill tok/s, the
follow-up's first token, and ms per decoded token. Targets: defaults ≤ 2.5 GB, low_memory ≤
2.0 GB (prompt cache budget not included: no snapshot is taken by a single request).

quality: on a fixed English text (≈400 tokens) the perplexity with each KV type, the share of
positions whose argmax equals f16's (teacher-forced), and how many greedy tokens from a fixed
prompt agree with f16's before the first difference (of 64). MODEL defaults to the stand-in;
--tiny uses a tiny random MiniCPM (head size 64, f32 weights) written here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

TEXT = (
    "The history of computing is a story of abstraction. Early machines were programmed by "
    "rewiring panels; stored programs let the same hardware run many tasks, and assemblers "
    "replaced numbers with names. High-level languages then hid registers and memory layout, "
    "so that scientists could write formulas instead of instructions. Operating systems shared "
    "one computer among many users, and networks joined computers into larger systems. Each "
    "layer hides the details of the one below it, so that people can think about bigger "
    "problems; each layer also costs something, in speed, in memory, or in the surprises that "
    "appear when the hidden details leak through. Notebooks are a recent layer of this kind: "
    "they mix code, results and prose in one document, which makes analysis easy to share and "
    "to repeat, as long as the cells are run in order. A language model inside the notebook "
    "adds another layer: it reads the cells, the errors and the figures, and suggests what to "
    "do next. Running that model on the user's own machine keeps the data private, but it has "
    "to fit in the memory of a laptop, next to the browser and the data itself. That is why "
    "the size of every buffer matters: the weights, the cache of keys and values that lets the "
    "model remember the prompt, and the scratch space of each step.")
FOLLOW_UP = " Now add a docstring to the function above."
CONFIGS = {  # --only picks by the short name
    "raw": ("raw llama-cpp-python (f16 KV)", "raw", {}),
    "f16": ("ours kv_type=f16", "ours", {"kv_type": "f16"}),
    "q8_0": ("ours kv_type=q8_0", "ours", {"kv_type": "q8_0"}),
    "q4_0": ("ours kv_type=q4_0", "ours", {"kv_type": "q4_0"}),
    "f16/q8_0": ("ours kv_type=f16/q8_0", "ours", {"kv_type": "f16/q8_0"}),
    "defaults": ("ours defaults", "ours", {}),
    "low_memory": ("ours low_memory=True", "ours", {"low_memory": True}),
}


def rss_worker(kind: str, path: str, opts: dict[str, Any], n_prompt: int,
               threads: int | None) -> dict[str, Any]:
    from minicpm.backends.llamacpp import physical_cores
    from minicpm.bench import FILLER, peak_rss_mb

    threads = threads or physical_cores()
    t0 = time.perf_counter()
    follow = (FOLLOW_UP * 8).encode()
    if kind == "raw":
        import llama_cpp

        llm = llama_cpp.Llama(path, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        ids = llm.tokenize((FILLER * (n_prompt // 10 + 2)).encode(), add_bos=True)[:n_prompt]
        more = llm.tokenize(follow, add_bos=False)[:24]

        def run(prompt: list[int]) -> tuple[float, list[float], list[int]]:
            t, stamps, out = time.perf_counter(), [], []
            for tok in llm.generate(prompt, temp=0.0):  # reuses its longest common prefix
                stamps.append(time.perf_counter())
                out.append(tok)
                if len(out) >= 8:
                    break
            return stamps[0] - t, stamps, out
        extra: dict[str, Any] = {}
    else:
        import minicpm
        from minicpm.sampling import SamplingParams

        engine = minicpm.load(path, backend="llama.cpp", n_ctx=4096, n_threads=threads, **opts)
        b = engine.backend
        ids = b.tokenize(FILLER * (n_prompt // 10 + 2), add_bos=True)[:n_prompt]
        more = b.tokenize(FOLLOW_UP * 8, add_bos=False)[:24]
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)

        def run(prompt: list[int]) -> tuple[float, list[float], list[int]]:
            t, stamps, out = time.perf_counter(), [], []
            for tok, _ in b.generate_tokens(prompt, params, threading.Event()):
                stamps.append(time.perf_counter())
                out.append(tok)
                if len(out) >= 8:
                    break
            return stamps[0] - t, stamps, out
        extra = {k: b.info.extra[k] for k in ("kv_type", "flash_attn", "n_batch")}
    first_s, stamps, out = run(ids)
    follow_s, _, _ = run(ids + out + more)
    if kind != "raw":
        extra["kv_context_mb"] = engine.stats()["kv"]["context_mb"]
    return {"peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0,
            "prefill_tok_s": len(ids) / first_s, "follow_up_ttft_s": follow_s,
            "decode_ms": 1000 * (stamps[-1] - stamps[0]) / (len(stamps) - 1), **extra}


def rss(args: argparse.Namespace) -> dict[str, Any]:
    from minicpm.bench import synthetic_gguf

    path = synthetic_gguf(args.synthetic)
    weights_mb = os.path.getsize(path) / 2**20
    rows = {}
    for key in args.only.split(","):
        label, kind, opts = CONFIGS[key]
        cmd = [sys.executable, __file__, "rss-worker", "--kind", kind, "--path", path,
               "--opts", json.dumps(opts), "--prompt-tokens", str(args.prompt_tokens)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"  {label}", file=sys.stderr)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.synthetic} shapes, Q4_0 weights {weights_mb:.0f} MB, n_ctx 4096, "
          f"{args.prompt_tokens}-token prompt + 8 tokens")
    print(f"{'setting':28s} {'KV type':>8s} {'FA':>5s} {'KV MB':>6s} {'peak RSS MB':>11s} "
          f"{'prefill tok/s':>13s} {'follow-up TTFT s':>16s} {'decode ms/tok':>13s}")
    for label, r in rows.items():
        print(f"{label:28s} {r.get('kv_type', 'f16'):>8s} {r.get('flash_attn', False)!s:>5s} "
              f"{r.get('kv_context_mb', 0):6.0f} {r['peak_rss_mb']:11.0f} "
              f"{r['prefill_tok_s']:13.1f} {r['follow_up_ttft_s']:16.2f} {r['decode_ms']:13.0f}")
    return {"model": args.synthetic, "weights_mb": weights_mb,
            "prompt_tokens": args.prompt_tokens, "rows": rows}


def _scores(engine: Any, ids: list[int]) -> np.ndarray:
    kv = engine.backend.kv
    kv.forget()
    rows = kv.decode(ids, all_logits=True)
    assert rows is not None
    return rows


def quality_of(path: str, kv_types: tuple[str, ...], text_ids_from: str = TEXT,
               n_greedy: int = 64) -> dict[str, Any]:
    import minicpm
    from minicpm.sampling import SamplingParams

    out: dict[str, Any] = {}
    ref_argmax = ref_greedy = None
    for kv_type in kv_types:
        with minicpm.load(path, backend="llama.cpp", n_ctx=1024, n_batch=512, kv_type=kv_type,
                          n_threads=1,
                          speculative="off") as engine:
            ids = engine.backend.tokenize(text_ids_from, add_bos=True)[:512]
            rows = _scores(engine, ids).astype(np.float64)
            logp = rows - rows.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            nll = -logp[np.arange(len(ids) - 1), ids[1:]].mean()
            argmax = rows.argmax(axis=1)
            b = engine.backend
            b.kv.forget()
            params = SamplingParams(temperature=0, max_tokens=n_greedy, ignore_eos=True)
            gen = b.generate_tokens(b.tokenize(TEXT[:200], add_bos=True), params,
                                    threading.Event())
            greedy_ids = [t for t, _ in itertools.islice(gen, n_greedy)]
        if ref_argmax is None:
            ref_argmax, ref_greedy = argmax, greedy_ids
        same = next((i for i, (a, b) in enumerate(zip(greedy_ids, ref_greedy, strict=False))
                     if a != b), min(len(greedy_ids), len(ref_greedy)))
        out[kv_type] = {"perplexity": float(np.exp(nll)), "tokens": len(ids),
                        "argmax_agreement": float((argmax == ref_argmax).mean()),
                        "greedy_same_prefix": same, "greedy_of": n_greedy}
    return out


def tiny_minicpm(folder: str) -> str:
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf

    cfg = preset("dense_tied", hidden_size=256, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=512, max_position_embeddings=1024)
    return str(write_gguf(cfg, random_weights(cfg, 0), os.path.join(folder, "tiny.gguf"),
                          dtype="f32"))


def quality(args: argparse.Namespace) -> dict[str, Any]:
    from minicpm.catalogue import resolve

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"tiny MiniCPM (f32, random)": tiny_minicpm(tmp)} if args.tiny else {}
        if not args.tiny or args.model:
            r = resolve(args.model)
            models[r.name + (" (stand-in)" if r.stand_in else "")] = str(r.path)
        for label, path in models.items():
            results[label] = quality_of(path, ("f16", "q8_0", "q4_0"))
    print(f"{'model':32s} {'KV':>5s} {'perplexity':>10s} {'argmax = f16':>12s} "
          f"{'greedy = f16':>12s}")
    for label, res in results.items():
        for kv, r in res.items():
            print(f"{label:32s} {kv:>5s} {r['perplexity']:10.3f} "
                  f"{100 * r['argmax_agreement']:11.1f}% "
                  f"{r['greedy_same_prefix']:>6d} of {r['greedy_of']}")
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["rss", "quality", "rss-worker"])
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--synthetic", default="minicpm-2b", choices=["minicpm-2b", "minicpm-1b"])
    p.add_argument("--prompt-tokens", type=int, default=3000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--only", default=",".join(CONFIGS), help="rss: which settings, e.g. raw,defaults")
    p.add_argument("--kind"), p.add_argument("--path"), p.add_argument("--opts", default="{}")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.mode == "rss-worker":
        print(json.dumps(rss_worker(a.kind, a.path, json.loads(a.opts), a.prompt_tokens,
                                    a.threads)))
        return 0
    result = rss(a) if a.mode == "rss" else quality(a)
    out = a.json or os.path.join(os.path.dirname(__file__), "results", f"kv_{a.mode}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
