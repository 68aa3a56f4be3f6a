#!/usr/bin/env python
"""Import cost of visdet's OPTIMIZERS registry against ``import torch, mmengine``.

Each case runs in a fresh interpreter, interleaved so that machine noise hits
both alike; the figure is the median over ``--repeats`` runs. The budget
(issue 2): reading every name in ``OPTIMIZERS.module_dict`` costs at most
0.5 s more than the baseline. mmengine's own ``import mmengine.optim`` (which
imports bitsandbytes and DeepSpeed eagerly) is shown for reference.

    python benchmarks/import_cost.py [--repeats 11]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "baseline: import torch, mmengine": "import torch, mmengine",
    "visdet: + visdet.registry, read all names": (
        "import torch, mmengine\n"
        "from visdet.registry import OPTIMIZERS\n"
        "names = list(OPTIMIZERS.module_dict)\nassert len(names) > 50"
    ),
    "reference: import mmengine.optim": "import torch, mmengine, mmengine.optim",
}
BUDGET_S = 0.5
# Timed inside one interpreter: less noisy than the difference of two process runs.
IN_PROCESS = (
    "import time\nimport torch, mmengine\nt = time.perf_counter()\n"
    "from visdet.registry import OPTIMIZERS\nnames = list(OPTIMIZERS.module_dict)\n"
    "print(time.perf_counter() - t)"
)


def time_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    for code in CASES.values():  # warm the file cache once
        time_once(code)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            samples[name].append(time_once(code))
    in_process = [
        float(subprocess.run([sys.executable, "-c", IN_PROCESS], check=True, capture_output=True, text=True).stdout)
        for _ in range(args.repeats)
    ]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["baseline: import torch, mmengine"]
    print(f"{'case':45s} {'median s':>9s} {'vs baseline':>12s}")
    for name, value in medians.items():
        print(f"{name:45s} {value:9.3f} {value / baseline:11.2f}x")
    extra = medians["visdet: + visdet.registry, read all names"] - baseline
    inside = statistics.median(in_process)
    for label, value in (("process wall time", extra), ("in-process timer", inside)):
        verdict = "within" if value <= BUDGET_S else "OVER"
        print(f"visdet registry cost by {label:18s}: {value:+.3f} s ({verdict} the {BUDGET_S} s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
