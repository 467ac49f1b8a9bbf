"""Image and figure costs on this machine (CPU), and time to first token for "explain this
figure" with each engine available here.

    python bench/vision.py [--threads 2] [--repeats 3] [--no-real-tower]

Measures, per image:
  * preparation: matplotlib figure → PNG → oriented, bounded RGB image (minicpm.images);
  * figure summary (minicpm.figures.summarize_figure);
  * slicing geometry and pixel preparation for MiniCPM-V 2.0 (source + slices);
  * MiniCPM-V 2.0's vision encoder at its real size (SigLIP-400M, 26 blocks kept, resampler to
    2304 wide) with random weights, per 448×448 picture: the same FLOPs as the real model;
and time to first token for "explain this figure":
  * text engine (llama.cpp) with the figure summary in the prompt — the laptop path;
  * the torch MiniCPM-V pipeline on a tiny random model (pipeline overhead, not a model speed);
  * llama.cpp + mmproj on a tiny random MiniCPM-V 2.6-layout projector (pipeline overhead).
Writes bench/results/vision.json and prints a Markdown table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minicpm import images, prompts  # noqa: E402
from minicpm.figures import summarize_figure  # noqa: E402

HERE = Path(__file__).resolve().parent


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds over ``repeats`` runs (after one warm-up) and the last result."""
    out = fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def sample_figure() -> Any:
    rng = np.random.default_rng(0)
    fig, axs = plt.subplots(1, 2, figsize=(8, 3.5), dpi=100)
    x = np.linspace(0, 10, 200)
    axs[0].plot(x, np.sin(x) + 0.1 * x, label="signal")
    axs[0].plot(x, 0.1 * x, "--", label="trend")
    axs[0].set(title="Sensor", xlabel="time [s]", ylabel="value")
    axs[0].legend()
    axs[1].hist(rng.normal(size=2000), bins=30)
    axs[1].set_title("Residuals")
    return fig


def bench_prep(fig: Any, repeats: int) -> dict[str, Any]:
    from minicpm.vision import slicing
    from minicpm.vision.siglip import preprocess

    res: dict[str, Any] = {}
    res["figure_to_png_s"], png = timed(lambda: images.to_png_bytes(fig), repeats)
    res["png_to_pil_s"], pil = timed(lambda: images.to_pil(png), repeats)
    res["figure_px"] = list(pil.size)
    res["summary_s"], summary = timed(lambda: summarize_figure(fig), repeats)
    res["summary_chars"] = len(summary)
    res["slice_and_normalize_s"], pics = timed(
        lambda: [preprocess(im) for im in slicing.slice_image(pil).images], repeats)
    lay = slicing.layout(pil.size)
    res["minicpmv2_pictures"] = lay.num_images
    res["minicpmv2_grid"] = list(lay.grid) if lay.grid else None
    res["minicpmv2_image_tokens"] = 64 * lay.num_images
    return res


def bench_real_tower(repeats: int) -> dict[str, Any]:
    """SigLIP-400M (26 blocks) + resampler (1152 → 2304, 18 heads) on one 448² picture."""
    import torch

    from minicpm.vision.resampler import Resampler
    from minicpm.vision.siglip import SiglipTower

    torch.manual_seed(0)
    tower = SiglipTower().eval()
    res = Resampler(64, 2304, 2304 // 128, 1152).eval()
    with torch.no_grad():
        for m in (tower, res):
            for p in m.parameters():
                p.normal_(0, 0.02)
    x = torch.randn(1, 3, 448, 448)

    def run() -> Any:
        with torch.inference_mode():
            return res(tower(x), (32, 32))

    t, out = timed(run, repeats)
    n_params = sum(p.numel() for p in tower.parameters()) + sum(p.numel() for p in res.parameters())
    return {"tower_448_s": t, "params_m": round(n_params / 1e6, 1), "out_shape": list(out.shape),
            "threads": torch.get_num_threads()}


def ttft_text_engine(summary: str, repeats: int) -> dict[str, Any]:
    import minicpm

    eng = minicpm.load(None, n_ctx=2048)
    user, _ = prompts.build_user_message(prompts.EXPLAIN_IMAGE, [
        {"kind": "image", "label": "figure", "data": "-", "summary": summary}])
    msgs = [{"role": "system", "content": prompts.SYSTEM_PROMPT},
            {"role": "user", "content": user}]
    ts, n_prompt = [], 0
    for i in range(repeats):
        # A different first word each run: llama.cpp would otherwise reuse the cached prompt.
        run = [{"role": "system", "content": f"Run {i}. " + prompts.SYSTEM_PROMPT}, msgs[1]]
        g = eng.chat(run, temperature=0, max_tokens=4, seed=0)
        g.read()
        if g.usage.time_to_first_token is not None:
            ts.append(g.usage.time_to_first_token)
        n_prompt = g.usage.prompt_tokens
    info = eng.info
    eng.close()
    return {"engine": f"{info.backend}: {info.label}",
            "ttft_s": statistics.median(ts) if ts else float("nan"),
            "prompt_tokens": n_prompt}


def ttft_tiny_minicpmv(fig: Any, repeats: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests" / "vision"))
    from conftest import write_tiny_minicpmv  # the test fixture's folder writer

    from minicpm.api import Engine
    from minicpm.catalogue import ResolvedModel
    from minicpm.vision.backend import TorchVisionBackend

    with tempfile.TemporaryDirectory() as d:
        folder, _, _ = write_tiny_minicpmv(Path(d) / "tiny-v", max_positions=4096)
        b = TorchVisionBackend(ResolvedModel(folder, "hf", "tiny MiniCPM-V (random)"))
        eng = Engine(b)
        ts, enc, n = [], [], 0
        for _ in range(repeats):
            g = eng.chat([{"role": "user", "content": prompts.EXPLAIN_IMAGE}], images=[fig],
                         temperature=0, max_tokens=4, seed=0)
            g.read()
            ts.append(g.usage.time_to_first_token or 0.0)
            enc.append(b.last_image_seconds)
            n = g.usage.prompt_tokens
        return {"engine": "torch: tiny random MiniCPM-V 2.0 layout", "ttft_s": statistics.median(ts),
                "image_encode_s": statistics.median(enc), "prompt_tokens": n}


def ttft_tiny_llamacpp_vision(fig: Any, repeats: int) -> dict[str, Any]:
    import threading

    import llama_cpp

    sys.path.insert(0, str(HERE.parent / "tests" / "vision"))
    from test_llamacpp_vision import write_tiny_mmproj, write_tiny_text

    from minicpm.backends.base import Usage
    from minicpm.backends.llamacpp_vision import LlamaCppVision
    from minicpm.sampling import SamplingParams

    with tempfile.TemporaryDirectory() as d:
        text = write_tiny_text(Path(d) / "text.gguf")
        mm = write_tiny_mmproj(Path(d) / "mmproj.gguf")
        llm = llama_cpp.Llama(str(text), n_ctx=4096, n_threads=2, verbose=False)
        v = LlamaCppVision(llm, mm)
        ts, n = [], 0
        for _ in range(repeats):
            u = Usage()
            for _ in v.stream_chat([{"role": "user", "content": prompts.EXPLAIN_IMAGE}], [fig],
                                   SamplingParams(temperature=0, max_tokens=2),
                                   threading.Event(), u):
                pass
            if u.time_to_first_token is not None:
                ts.append(u.time_to_first_token)
            n = u.prompt_tokens
        llm.close()
    return {"engine": "llama.cpp + mmproj: tiny random MiniCPM-V 2.6 layout (28-px tiles)",
            "ttft_s": statistics.median(ts) if ts else float("nan"), "prompt_tokens": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-real-tower", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results" / "vision.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    fig = sample_figure()
    out: dict[str, Any] = {"machine": f"{platform.machine()} {platform.processor()} "
                                      f"{os.cpu_count()} cpus, torch threads {args.threads}"}
    out["prep"] = bench_prep(fig, args.repeats)
    summary = summarize_figure(fig)
    if not args.no_real_tower:
        out["minicpmv2_tower"] = bench_real_tower(max(1, args.repeats - 1))
    out["ttft"] = []
    for fn in (lambda: ttft_text_engine(summary, args.repeats),
               lambda: ttft_tiny_minicpmv(fig, args.repeats),
               lambda: ttft_tiny_llamacpp_vision(fig, args.repeats)):
        try:
            out["ttft"].append(fn())
        except Exception as e:  # noqa: BLE001 - report what could not run, keep going
            out["ttft"].append({"engine": "?", "error": f"{type(e).__name__}: {e}"})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    p = out["prep"]
    print(f"machine: {out['machine']}\n")
    print("| step | time |\n| --- | --- |")
    print(f"| figure → PNG ({p['figure_px'][0]}×{p['figure_px'][1]}) | "
          f"{p['figure_to_png_s'] * 1e3:.1f} ms |")
    print(f"| PNG → checked RGB image | {p['png_to_pil_s'] * 1e3:.1f} ms |")
    print(f"| figure summary ({p['summary_chars']} chars) | {p['summary_s'] * 1e3:.1f} ms |")
    print(f"| MiniCPM-V 2.0 slicing + normalize ({p['minicpmv2_pictures']} pictures, grid "
          f"{p['minicpmv2_grid']}) | {p['slice_and_normalize_s'] * 1e3:.1f} ms |")
    if "minicpmv2_tower" in out:
        t = out["minicpmv2_tower"]
        print(f"| SigLIP-400M + resampler, one 448² picture ({t['params_m']} M params, fp32) | "
              f"{t['tower_448_s']:.2f} s |")
        print(f"| … whole figure ({p['minicpmv2_pictures']} pictures, estimated) | "
              f"{t['tower_448_s'] * p['minicpmv2_pictures']:.1f} s |")
    print("\n| engine | TTFT 'explain this figure' | prompt tokens |\n| --- | --- | --- |")
    for r in out["ttft"]:
        if "error" in r:
            print(f"| {r['engine']} | {r['error']} | |")
        else:
            extra = (f" (image encode {r['image_encode_s'] * 1e3:.0f} ms)"
                     if "image_encode_s" in r else "")
            print(f"| {r['engine']} | {r['ttft_s'] * 1e3:.0f} ms{extra} | {r['prompt_tokens']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
