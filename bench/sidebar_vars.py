"""Sidebar variables (issue 12): time to build the automatic context of "Explain cell" for the
last cell of a 200-cell notebook in JavaScript (target: <= 30 ms).

    .venv/bin/python bench/sidebar_vars.py [--rounds 15] [--json]

Ours: `automaticParts` (labextension/src/sidebar/varcontext.ts): def-use over the notebook,
the kernel's descriptions (a callback answering at once with canned 40-token descriptions: the
kernel round trip is not in this number, see bench/inspect_vars.py for the kernel side),
budget fitting and the defining-cell chips. Peer, interleaved in the same node process:
`definitionsFor` alone (the def-use step every design needs). Cold = a fresh names cache
(first look at the notebook); warm = the cache filled (what a second click costs). tsc compiles
the TypeScript into a temporary folder; node runs it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from notebook_cells import CELL_KINDS_JS

BENCH_JS = r"""
const vc = require('./sidebar/varcontext.js');
const v = require('./variables.js');
const rounds = Number(process.argv[2] || 15);
""" + CELL_KINDS_JS + r"""const cells = Array.from({length: 200}, (_, i) => ({cell_type: 'code', source: kinds[i % 4](i),
  execution_count: i + 1}));
const sources = cells.map(c => c.source);
const describe = async names => ({descriptions: names.map(n => ({name: n,
  text: `${n}: ` + 'x'.repeat(120), tokens: 40}))});
const ms = t0 => Number(process.hrtime.bigint() - t0) / 1e6;
const median = a => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
(async () => {
  const ours = {cold: [], warm: []}, peer = {cold: [], warm: []};
  let chips = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    const parts = await vc.automaticParts(cells, 199, describe, 2048, [], 256, 'python',
                                          new v.NamesCache());
    ours.cold.push(ms(t0));
    chips = parts.length;
    const t1 = process.hrtime.bigint();
    v.definitionsFor(sources, 199, new v.NamesCache());
    peer.cold.push(ms(t1));
    const warmCache = new v.NamesCache();
    await vc.automaticParts(cells, 199, describe, 2048, [], 256, 'python', warmCache);
    const t2 = process.hrtime.bigint();
    await vc.automaticParts(cells, 199, describe, 2048, [], 256, 'python', warmCache);
    ours.warm.push(ms(t2));
    const t3 = process.hrtime.bigint();
    v.definitionsFor(sources, 199, warmCache);
    peer.warm.push(ms(t3));
  }
  console.log(JSON.stringify({cells: 200, rounds, chips,
    ours: {cold_median_ms: median(ours.cold), warm_median_ms: median(ours.warm)},
    peer_definitionsFor: {cold_median_ms: median(peer.cold), warm_median_ms: median(peer.warm)}}));
})();
"""


def measure(rounds: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1] / "labextension"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["npx", "tsc", "--outDir", out, "--rootDir", "src", "--module", "commonjs",
                        "--target", "ES2020", "--moduleResolution", "node", "--skipLibCheck",
                        "--lib", "ES2020,DOM", "src/sidebar/varcontext.ts"],
                       cwd=root, check=True)
        (Path(out) / "bench.js").write_text(BENCH_JS)
        r = subprocess.run(["node", "bench.js", str(rounds)], cwd=out, check=True,
                           capture_output=True, text=True)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", action="store_true", help="JSON only")
    res = measure(ap.parse_args().rounds)
    if not ap.parse_args().json:
        o, p = res["ours"], res["peer_definitionsFor"]
        print(f"200-cell notebook, {res['rounds']} rounds, {res['chips']} chips")
        print(f"{'':26}{'cold ms':>10}{'warm ms':>10}")
        print(f"{'automaticParts (ours)':26}{o['cold_median_ms']:>10.2f}{o['warm_median_ms']:>10.2f}")
        print(f"{'definitionsFor (peer)':26}{p['cold_median_ms']:>10.2f}{p['warm_median_ms']:>10.2f}")
        print(f"{'ratio':26}{o['cold_median_ms'] / p['cold_median_ms']:>10.2f}"
              f"{o['warm_median_ms'] / max(p['warm_median_ms'], 1e-6):>10.2f}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
