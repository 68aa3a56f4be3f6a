#!/usr/bin/env python
"""Import cost of visdet's OPTIMIZERS registry against ``import torch, mmengine``.

Each case runs in a fresh interpreter, interleaved so that machine noise hits
all alike; the figure is the median over ``--repeats`` runs. The budget
(issue 2): reading every name in ``OPTIMIZERS.module_dict`` costs at most
0.5 s more than the baseline. Two visdet cases: with a warm scan cache (the
usual import: the source scan's answers are read from the cache) and with a
cold one (the first import after an install or upgrade parses the optimizer
packages' files). Both use a private cache dir (``VISDET_CACHE_DIR``), never
the user's. mmengine's own ``import mmengine.optim`` (which imports
bitsandbytes and DeepSpeed eagerly) is shown for reference.

    python benchmarks/import_cost.py [--repeats 11] [--no-reference]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BASELINE = "baseline: import torch, mmengine"
WARM = "visdet, warm scan cache: read all names"
COLD = "visdet, cold scan cache: read all names"
REFERENCE = "reference: import mmengine.optim"
READ_ALL = (
    "import torch, mmengine\n"
    "from visdet.registry import OPTIMIZERS\n"
    "names = list(OPTIMIZERS.module_dict)\nassert len(names) > 50"
)
CASES = {
    BASELINE: "import torch, mmengine",
    WARM: READ_ALL,
    COLD: READ_ALL,
    REFERENCE: "import torch, mmengine, mmengine.optim",
}
BUDGET_S = 0.5
# Timed inside one interpreter: less noisy than the difference of two process runs.
IN_PROCESS = (
    "import time\nimport torch, mmengine\nt = time.perf_counter()\n"
    "from visdet.registry import OPTIMIZERS\nnames = list(OPTIMIZERS.module_dict)\n"
    "print(time.perf_counter() - t)"
)


def run(code: str, cache_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISDET_CACHE_DIR": cache_dir}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)


def time_once(code: str, cache_dir: str) -> float:
    start = time.perf_counter()
    run(code, cache_dir)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow import mmengine.optim case")
    args = parser.parse_args()
    cases = {k: v for k, v in CASES.items() if not (args.no_reference and k == REFERENCE)}
    root = tempfile.mkdtemp(prefix="visdet-import-cost-")
    warm_dir, cold_dir = os.path.join(root, "warm"), os.path.join(root, "cold")

    def cache_for(name: str) -> str:
        if name == COLD:
            shutil.rmtree(cold_dir, ignore_errors=True)  # every cold run starts from nothing
        return cold_dir if name == COLD else warm_dir

    try:
        for name, code in cases.items():  # warm the file cache (and the warm scan cache) once
            time_once(code, cache_for(name))
        samples: dict[str, list[float]] = {name: [] for name in cases}
        inside: dict[str, list[float]] = {WARM: [], COLD: []}
        for _ in range(args.repeats):
            for name, code in cases.items():
                samples[name].append(time_once(code, cache_for(name)))
            for name in inside:
                inside[name].append(float(run(IN_PROCESS, cache_for(name)).stdout))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians[BASELINE]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"{args.repeats} repeats on {os.cpu_count()} CPUs; load average after the runs: {load}")
    print(f"{'case':45s} {'median s':>9s} {'vs baseline':>12s}")
    for name, value in medians.items():
        print(f"{name:45s} {value:9.3f} {value / baseline:11.2f}x")
    for cache, name in (("warm", WARM), ("cold", COLD)):
        wall, timer = medians[name] - baseline, statistics.median(inside[name])
        for label, value in (("process wall time", wall), ("in-process timer", timer)):
            verdict = "within" if value <= BUDGET_S else "OVER"
            print(f"visdet registry cost, {cache} cache, by {label:18s}: {value:+.3f} s "
                  f"({verdict} the {BUDGET_S} s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
