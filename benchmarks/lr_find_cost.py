#!/usr/bin/env python
"""What the lr finder costs: at most the iterations asked for plus one restore (issue 16's promise).

Runs, in this process and on the same config, the range test over ``--iters``
iterations and ``--iters`` plain training iterations, alternately
``--repeats`` times. Both Runners are built alike (``range_test.configure``:
no validation, no checkpoint hook, no lr schedule, the config's other hooks),
after one uncounted warm-up run, so the only difference is the sweep's loop: setting each group's lr, smoothing
the loss, the snapshot before the first iteration and the restore after the
last. The default range (1e-7 to 1e-4) is below where the small config's
loss diverges, so the finder runs every iteration asked for. Prints the
iterations each ran, the restore's seconds and the ratio of the finder's
``runner.train()`` time to the plain run's plus the restore (medians), in
wall time and in this process's CPU time (which other processes on a shared
machine disturb less); 1.0 means the sweep costs nothing beyond them.

    python benchmarks/lr_find_cost.py [--config configs/faster_rcnn_r18_small.py] [--iters 20] [--repeats 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from visdet.choosing.lr_finder.range_test import RangeTestSettings, build_range_test_runner, configure  # noqa: E402
from visdet.choosing.prepare import prepare_runner  # noqa: E402
from visdet.engine.launch import load_config  # noqa: E402


def _timed_train(runner) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``runner.train()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    runner.train()
    return time.perf_counter() - wall, time.process_time() - cpu


def finder_run(config: str, settings: RangeTestSettings, work_dir: str) -> tuple[float, float, int, float]:
    """(wall and CPU seconds of runner.train(), iterations run, restore seconds) of one range test."""
    runner, _ = build_range_test_runner(load_config(config), settings, work_dir)
    wall, cpu = _timed_train(runner)
    record = runner.train_loop.record
    return wall, cpu, len(record.lrs), record.restore_seconds


def plain_run(config: str, settings: RangeTestSettings, work_dir: str) -> tuple[float, float, int]:
    """(wall and CPU seconds of runner.train(), iterations run) of the config trained ``settings.iters`` iterations."""
    cfg = load_config(config)
    configure(cfg, settings)
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=int(settings.iters), val_interval=settings.iters + 1)
    name = f"plain_{time.time_ns()}"
    cfg.visualizer["name"] = name
    runner = prepare_runner(cfg, work_dir, experiment_name=name)
    wall, cpu = _timed_train(runner)
    return wall, cpu, runner.iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--config", default=str(REPO / "configs" / "faster_rcnn_r18_small.py"))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--start", type=float, default=1e-7)
    parser.add_argument("--end", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    settings = RangeTestSettings(start=args.start, end=args.end, iters=args.iters)
    finder, plain, finder_cpu, plain_cpu, restores, finder_iters, plain_iters = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="lr_find_cost_") as tmp:
        # The first Runner of a process pays one-off costs (thread pools, first allocations, imports on first
        # use) that would be charged to whichever case ran first: a short plain run takes them, uncounted.
        plain_run(args.config, RangeTestSettings(start=args.start, end=args.end, iters=2), f"{tmp}/warmup")
        for repeat in range(args.repeats):
            wall, cpu, iters, restore = finder_run(args.config, settings, f"{tmp}/finder{repeat}")
            finder.append(wall)
            finder_cpu.append(cpu)
            finder_iters.append(iters)
            restores.append(restore)
            wall, cpu, iters = plain_run(args.config, settings, f"{tmp}/plain{repeat}")
            plain.append(wall)
            plain_cpu.append(cpu)
            plain_iters.append(iters)
    med = statistics.median
    f, p, r, fc, pc = med(finder), med(plain), med(restores), med(finder_cpu), med(plain_cpu)
    runs = ", ".join
    print(f"\nconfig: {args.config}; lr {args.start:g} -> {args.end:g}, --iters {args.iters}, {args.repeats} repeats")
    print(f"finder: {finder_iters} iterations run (asked for {args.iters}); runner.train() wall median {f:.2f} s "
          f"(runs: {runs(f'{x:.2f}' for x in finder)}), CPU median {fc:.2f} s; restore median {r:.3f} s")
    print(f"plain training: {plain_iters} iterations; runner.train() wall median {p:.2f} s "
          f"(runs: {runs(f'{x:.2f}' for x in plain)}), CPU median {pc:.2f} s")
    print(f"finder / (plain iterations + restore) = {f / (p + r):.3f} wall, {fc / (pc + r):.3f} CPU time "
          "(CPU time is the steadier figure on a shared machine)")

if __name__ == "__main__":
    main()
