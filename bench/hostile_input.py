"""A flood of large-pixel images against the server: this tree vs an older commit, interleaved.

    python bench/hostile_input.py [--ref 01a6504] [--images 30] [--side 6000] [--runs 3]

Starts two `jupyter server` processes with minicpm_server (no model loaded: the requests are
refused or fail before any generation): one from this working tree, one from --ref (extracted
with `git archive` into a temporary folder and put first on PYTHONPATH). Each run sends, to
each server in turn, one OpenAI request with --images single-colour PNGs of --side² pixels
(~120 KB each, ~110 MB each decoded), while a thread polls GET /minicpm/status every 20 ms.
Reports the answer's status and time, the slowest status answer during it, and the server's
peak RSS growth (sampled every 20 ms). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from minicpm_server.testserver import start_server as launch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "server"))
from pngs import big_png  # noqa: E402

TOKEN = "bench"
ROOT = Path(__file__).resolve().parent.parent


def start(pythonpath: str | None, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    (tmp / name).mkdir()
    try:
        server = launch("--MiniCPM.load_on_start=False",
                        f"--MiniCPM.chats_dir={tmp / name / 'chats'}", token=TOKEN,
                        root=tmp / name, cwd=tmp / name, env=env, wait_for="up", timeout=120)
    except RuntimeError as e:
        raise SystemExit(f"{name} server did not start: {e}") from e
    return server.proc, server.url


def get(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def flood(url: str, pid: int, body: bytes) -> dict[str, Any]:
    proc = psutil.Process(pid)
    rss0 = proc.memory_info().rss
    peak = rss0
    lat: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                get(url + "/minicpm/status")
            except OSError:
                pass
            lat.append(time.perf_counter() - t0)
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.02)

    th = threading.Thread(target=poll)
    th.start()
    req = urllib.request.Request(url + "/minicpm/v1/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"token {TOKEN}",
                                          "Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            code, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read()
    elapsed = time.perf_counter() - t0
    time.sleep(0.1)
    stop.set()
    th.join()
    try:
        message = json.loads(text)["error"]["message"][:70]
    except Exception:  # noqa: BLE001 - whatever came back
        message = text[:70].decode("utf-8", "replace")
    return {"status": code, "seconds": elapsed, "max_status_s": max(lat) if lat else None,
            "rss_growth_mb": (peak - rss0) / 2**20, "message": message}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="01a6504", help="the older commit to compare with")
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--side", type=int, default=6000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    b64 = base64.b64encode(big_png(args.side, args.side)).decode()
    body = json.dumps({"max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What are these?"}] + [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}}
        for _ in range(args.images)]}]}).encode()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.ref, "src", "extension"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tf:
            tf.extractall(old, filter="data")
        servers = {"this tree": start(None, tmp, "new"),
                   f"at {args.ref}": start(f"{old / 'extension'}:{old / 'src'}", tmp, "oldsrv")}
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
        try:
            for _ in range(args.runs):
                for name, (proc, url) in servers.items():
                    results[name].append(flood(url, proc.pid, body))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
    print(f"{args.images} PNGs of {args.side}×{args.side} px in one request, "
          f"{len(body) / 2**20:.1f} MiB body, {args.runs} runs (median)")
    print(f"{'server':>14} {'status':>6} {'answer s':>9} {'max status s':>13} "
          f"{'RSS growth MB':>14}  message")
    summary = {}
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("seconds", "max_status_s", "rss_growth_mb")}
        summary[name] = {**med, "status": rs[-1]["status"], "message": rs[-1]["message"],
                         "runs": rs}
        print(f"{name:>14} {rs[-1]['status']:>6} {med['seconds']:>9.3f} "
              f"{med['max_status_s']:>13.3f} {med['rss_growth_mb']:>14.0f}  {rs[-1]['message']}")
    print(json.dumps({"bench": "hostile_input", "images": args.images, "side": args.side,
                      "results": summary}))


if __name__ == "__main__":
    main()
