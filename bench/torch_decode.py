"""Decode benchmark for the torch engine at MiniCPM-2B / MiniCPM-1B shapes (random weights).

Batch 1, a P-token prompt, N new tokens (greedy, EOS ignored). Per engine: decode tokens/s,
prefill tokens/s, time to first token, peak memory (CUDA: max allocated; CPU: peak RSS of the
worker process, each measurement in its own process). Engines: ours in bf16/int8/int4 (+fp32 on
CPU), transformers' LlamaForCausalLM eager (and static cache + torch.compile on CUDA), and on CPU
the llama.cpp backend on an f16 GGUF of the same shapes. The bandwidth bound is bytes read per
token (weights + average KV cache) over the measured device copy bandwidth.

    python bench/torch_decode.py                      # CUDA: full shapes, 128 → 256
    python bench/torch_decode.py --layers 4 --prompt 32 --new 16   # a 2-core CPU, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

SHAPES = {  # name: vocab, hidden, intermediate, layers, heads, kv_heads
    "2b": (122753, 2304, 5760, 40, 36, 36),
    "1b": (73440, 1536, 3840, 52, 24, 8),
}


def model_config(shape: str, layers: int | None) -> Any:
    from minicpm.torch.model import ModelConfig

    v, h, i, n, nh, nkv = SHAPES[shape]
    return ModelConfig(vocab_size=v, hidden_size=h, intermediate_size=i, num_layers=layers or n,
                       num_heads=nh, num_kv_heads=nkv, head_dim=h // nh, scale_emb=12.0,
                       scale_depth=1.4, dim_model_base=256.0, max_position_embeddings=4096)


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a device-to-device copy (read + write counted), best of 5."""
    import torch

    n = 256 * 2**20
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        b.copy_(a)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n / best


def _peak(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_ours(a: argparse.Namespace, mode: str) -> dict[str, Any]:
    import torch

    from minicpm.sampling import SamplingParams
    from minicpm.torch.generate import Generator
    from minicpm.torch.model import MiniCPM
    from minicpm.torch.quantize import quantize_model

    cfg = model_config(a.shape, a.layers)
    dtype = {"fp32": torch.float32}.get(mode, torch.bfloat16)
    torch.manual_seed(0)
    with torch.device(a.device):
        model = MiniCPM(cfg).to(dtype)
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    model.requires_grad_(False)
    if mode in ("int8", "int4"):
        quantize_model(model, mode)
    weight_bytes = sum(t.numel() * t.element_size() for t in
                       list(model.parameters()) + list(model.buffers()))
    gen = Generator(model, a.prompt + a.new + 32)
    prompt = torch.randint(3, cfg.vocab_size, (a.prompt,)).tolist()
    params = SamplingParams(temperature=0, ignore_eos=True)
    for _ in range(a.warmup):  # warm-up: allocator, kernels, graph replays
        list(gen.generate(prompt[:8], params, max_new=4))
    _sync(a.device)
    gen.cached = []  # the warm-up prompt is a prefix of this one: time a cold prefill
    t0 = time.perf_counter()
    stamps = []
    answer: list[int] = []
    for _tok in gen.generate(prompt, params, max_new=a.new):
        stamps.append(time.perf_counter())
        answer.append(_tok)
    ttft = stamps[0] - t0
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    # A follow-up turn (the prompt, the answer, 16 new tokens): its first token with the cache
    # holding the conversation (prefix reuse) and with a cold cache, alternating, best of 2.
    follow = prompt + answer + torch.randint(3, cfg.vocab_size, (16,)).tolist()
    warm, cold = [], []
    for _ in range(2):
        for out, keep in ((warm, True), (cold, False)):
            list(gen.generate(prompt + answer[:-1], params, max_new=1))  # cache: prompt+answer
            if not keep:
                gen.cached = []
            _sync(a.device)
            t1 = time.perf_counter()
            next(gen.generate(follow, params, max_new=1))
            _sync(a.device)
            out.append(time.perf_counter() - t1)
    return {"engine": f"ours {mode}", "ttft_s": ttft, "prefill_tps": a.prompt / ttft,
            "decode_tps": decode, "peak_bytes": _peak(a.device), "weight_bytes": weight_bytes,
            "followup_ttft_reuse_s": min(warm), "followup_ttft_cold_s": min(cold)}


def run_hf(a: argparse.Namespace, compiled: bool) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    v, h, i, n, nh, nkv = SHAPES[a.shape]
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    cfg = LlamaConfig(vocab_size=v, hidden_size=h, intermediate_size=i,
                      num_hidden_layers=a.layers or n, num_attention_heads=nh,
                      num_key_value_heads=nkv, max_position_embeddings=4096,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(a.device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    ids = torch.randint(3, v, (1, a.prompt), device=a.device)
    kw: dict[str, Any] = dict(do_sample=False, pad_token_id=0)
    if compiled:
        kw["cache_implementation"] = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    with torch.inference_mode():
        for _ in range(a.warmup):
            model.generate(ids[:, :8], max_new_tokens=4, min_new_tokens=4, **kw)
        _sync(a.device)
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        _sync(a.device)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=a.new, min_new_tokens=a.new, **kw)
        _sync(a.device)
        total = time.perf_counter() - t0
    return {"engine": "transformers " + ("static+compile" if compiled else "eager") +
            (" bf16" if dtype == torch.bfloat16 else " fp32"),
            "ttft_s": ttft, "prefill_tps": a.prompt / ttft,
            "decode_tps": (a.new - 1) / max(total - ttft, 1e-9), "peak_bytes": _peak(a.device)}


def write_gguf(path: str, shape: str, layers: int | None) -> None:
    """An f16 llama-architecture GGUF of the same shapes with random weights and a dummy vocab."""
    import gguf
    import numpy as np

    v, h, i, n, nh, nkv = SHAPES[shape]
    n = layers or n
    d = h // nh
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"bench-{shape}")
    w.add_context_length(4096)
    w.add_embedding_length(h)
    w.add_feed_forward_length(i)
    w.add_block_count(n)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_dimension_count(d)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list([b"<unk>", b"<s>", b"</s>"] + [f"t{k}".encode() for k in range(3, v)])
    w.add_token_scores([0.0] * v)
    w.add_token_types([2, 3, 3] + [1] * (v - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(0)

    def t(name: str, *shape_: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape_, dtype=np.float32) * 0.02)
                     .astype(np.float16))

    t("token_embd.weight", v, h)
    w.add_tensor("output_norm.weight", np.ones(h, dtype=np.float32))
    for b in range(n):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(h, dtype=np.float32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(h, dtype=np.float32))
        t(f"blk.{b}.attn_q.weight", nh * d, h)
        t(f"blk.{b}.attn_k.weight", nkv * d, h)
        t(f"blk.{b}.attn_v.weight", nkv * d, h)
        t(f"blk.{b}.attn_output.weight", h, nh * d)
        t(f"blk.{b}.ffn_gate.weight", i, h)
        t(f"blk.{b}.ffn_up.weight", i, h)
        t(f"blk.{b}.ffn_down.weight", h, i)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_llamacpp(a: argparse.Namespace) -> dict[str, Any]:
    import llama_cpp
    import numpy as np

    path = os.path.join(a.tmp, f"bench-{a.shape}-{a.layers}.gguf")
    if not os.path.exists(path):
        write_gguf(path, a.shape, a.layers)
    threads = a.threads or os.cpu_count() or 1
    llm = llama_cpp.Llama(path, n_ctx=a.prompt + a.new + 8, n_threads=threads,
                          n_threads_batch=threads, n_batch=512, verbose=False)
    prompt = np.random.default_rng(0).integers(3, SHAPES[a.shape][0], a.prompt).tolist()
    for _ in range(a.warmup):
        llm.reset()
        llm.eval(prompt[:8])
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    llm.sample(temp=0.0)
    ttft = time.perf_counter() - t0
    t1 = time.perf_counter()
    tok = 3
    for _ in range(a.new - 1):
        llm.eval([tok])
        tok = max(3, llm.sample(temp=0.0))
    dec = (a.new - 1) / (time.perf_counter() - t1)
    return {"engine": "llama.cpp f16 GGUF", "ttft_s": ttft, "prefill_tps": a.prompt / ttft,
            "decode_tps": dec, "peak_bytes": _peak("cpu")}


def worker(a: argparse.Namespace) -> None:
    import torch

    if a.threads and a.device == "cpu":
        torch.set_num_threads(a.threads)
    kind = a.worker
    if kind.startswith("ours-"):
        res = run_ours(a, kind.removeprefix("ours-"))
    elif kind.startswith("hf-"):
        res = run_hf(a, compiled=kind == "hf-compile")
    elif kind == "llamacpp":
        res = run_llamacpp(a)
    elif kind == "bandwidth":
        res = {"bandwidth": copy_bandwidth(a.device)}
    else:
        raise SystemExit(f"unknown worker {kind}")
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="2b,1b")
    ap.add_argument("--device", default=None)
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (CPU); default all")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--modes", default=None, help="ours: fp32,bf16,int8,int4")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default="2b", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.device is None:
        import torch

        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.worker:
        return worker(a)

    modes = (a.modes or ("bf16,int8,int4" if a.device == "cuda" else "fp32,bf16,int8,int4"))
    runs = [f"ours-{m}" for m in modes.split(",")]
    if not a.no_hf:
        runs += ["hf-eager"] + (["hf-compile"] if a.device == "cuda" else [])
    if a.device == "cpu" and not a.no_llamacpp:
        runs.append("llamacpp")

    def spawn(kind: str, shape: str) -> dict[str, Any]:
        argv = [sys.executable, __file__, "--worker", kind, "--shape", shape, "--device", a.device,
                "--prompt", str(a.prompt), "--new", str(a.new), "--warmup", str(a.warmup),
                "--tmp", a.tmp]
        argv += ["--layers", str(a.layers)] if a.layers else []
        argv += ["--threads", str(a.threads)] if a.threads else []
        p = subprocess.run(argv, capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            return {"engine": kind, "error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
        return json.loads(line[0][7:])

    bw = spawn("bandwidth", "2b").get("bandwidth", 0.0)
    results: list[dict[str, Any]] = []
    for shape in a.shapes.split(","):
        cfg = model_config(shape, a.layers)
        for kind in runs:
            r = spawn(kind, shape)
            r["shape"] = shape
            if "weight_bytes" in r and bw:
                kv_el = 2 if "fp32" not in r["engine"] else 4
                kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * kv_el * (
                    a.prompt + a.new / 2)
                r["bound_tps"] = bw / (r["weight_bytes"] + kv)
                r["pct_of_bound"] = 100 * r["decode_tps"] / r["bound_tps"]
            results.append(r)
            print(f"  {shape} {r.get('engine')}: {r.get('decode_tps', r.get('error'))}",
                  file=sys.stderr)
    meta = {"date": time.strftime("%Y-%m-%d"), "device": a.device, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "layers": a.layers or "all", "prompt": a.prompt,
            "new": a.new, "copy_bandwidth_GBps": bw / 1e9}
    if a.device == "cuda":
        import torch

        meta["gpu"] = torch.cuda.get_device_name()
    print(f"\n{meta}\n")
    print("| shape | engine | decode tok/s | prefill tok/s | TTFT s | peak mem GiB | bound tok/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "error" in r:
            print(f"| {r['shape']} | {r['engine']} | failed: {r['error']} | | | | |")
            continue
        bound = f"{r['bound_tps']:.1f} ({r['pct_of_bound']:.0f}%)" if "bound_tps" in r else ""
        print(f"| {r['shape']} | {r['engine']} | {r['decode_tps']:.2f} | {r['prefill_tps']:.1f} | "
              f"{r['ttft_s']:.3f} | {r['peak_bytes'] / 2**30:.2f} | {bound} |")
    print("\nFollow-up turn (prompt + answer + 16 new tokens), time to first token:")
    print("| shape | engine | prefix reuse s | cold cache s | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in results:
        if "followup_ttft_reuse_s" in r:
            w, c = r["followup_ttft_reuse_s"], r["followup_ttft_cold_s"]
            print(f"| {r['shape']} | {r['engine']} | {w:.3f} | {c:.3f} | {c / w:.1f}x |")
    out = {"meta": meta, "results": results}
    print("\n" + json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
