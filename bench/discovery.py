"""How long listing the models other tools downloaded takes: a fake Ollama store of N manifests
over N distinct GGUF blobs (plus the template/params layers Ollama keeps, which are never read)
and an LM Studio folder of M files, in a temporary HOME.

    python bench/discovery.py [--ollama 200] [--lmstudio 50] [--repeats 5] [--json out.json]

"cold" empties the in-process caches of GGUF heads and parsed manifests first (the OS page
cache stays warm, as on a laptop that listed its models a minute ago); "warm" is the next
listing in the same process, which re-walks the folders and stats every file but reads no
manifest or header again. `list_models` adds the
catalogue lookups and the stand-in around the scan. Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def build(home: Path, n_ollama: int, n_lms: int) -> None:
    from minicpm.testing import preset, random_weights
    from minicpm.testing.gguf_writer import write_gguf

    cfg = preset("dense_tied")
    tiny = write_gguf(cfg, random_weights(cfg, 0), home / "tiny.gguf", name="MiniCPM tiny")
    data = tiny.read_bytes()
    tiny.unlink()
    ollama = home / ".ollama" / "models"
    (ollama / "blobs").mkdir(parents=True)

    def blob(body: bytes) -> str:
        d = hashlib.sha256(body).hexdigest()
        (ollama / "blobs" / f"sha256-{d}").write_bytes(body)
        return f"sha256:{d}"

    for i in range(n_ollama):
        layers = [("model", blob(data + i.to_bytes(4, "little"))),
                  ("template", blob(f"{{{{ .Prompt }}}} {i}".encode())),
                  ("params", blob(json.dumps({"stop": [f"<{i}>"]}).encode()))]
        m = ollama / "manifests" / "registry.ollama.ai" / "library" / f"model{i:03d}" / "latest"
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"layers": [
            {"mediaType": f"application/vnd.ollama.image.{t}", "digest": d} for t, d in layers]}))
    for i in range(n_lms):
        d = home / ".lmstudio" / "models" / "publisher" / f"repo{i:03d}-GGUF"
        d.mkdir(parents=True)
        (d / f"repo{i:03d}-Q4_K_M.gguf").write_bytes(data)


def timed(fn: Any, repeats: int, before: Any = None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ollama", type=int, default=200)
    ap.add_argument("--lmstudio", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="minicpm-bench-discovery-") as tmp:
        home = Path(tmp)
        for var in ("OLLAMA_MODELS", "LLAMA_CACHE", "HF_HUB_CACHE", "XDG_CACHE_HOME",
                    "MINICPM_MODELS", "MINICPM_DISCOVER"):
            os.environ.pop(var, None)
        os.environ.update(HOME=str(home), HF_HOME=str(home / "hf"),
                          MINICPM_CACHE=str(home / "cache"))
        build(home, args.ollama, args.lmstudio)
        from minicpm import discovery, gguf_head
        from minicpm.catalogue import list_models

        n = len(discovery.discover().found)
        rows = {
            "scan cold (nothing cached)": timed(discovery.discover, args.repeats,
                                                before=lambda: (gguf_head._cache.clear(),
                                                                discovery._manifests.clear())),
            "scan warm": timed(discovery.discover, args.repeats),
            "list_models warm": timed(list_models, args.repeats),
        }
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    print(f"{args.ollama} Ollama manifests ({3 * args.ollama} blobs), {args.lmstudio} LM Studio "
          f"files: {n} models found; load average {' '.join(load)}")
    print(f"{'':32s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}")
    result = {"ollama_manifests": args.ollama, "ollama_blobs": 3 * args.ollama,
              "lmstudio_files": args.lmstudio, "found": n, "loadavg": load, "ms": {}}
    for k, v in rows.items():
        print(f"{k:32s} {statistics.median(v):10.1f} {min(v):8.1f} {max(v):8.1f}")
        result["ms"][k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
