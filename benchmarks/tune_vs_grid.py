#!/usr/bin/env python
"""A pruned Optuna study against the exhaustive grid over the same space: best mAP and training iterations.

The issue's claim: on the small config, a pruned study over 3 optimizer types
x learning rate finds a configuration within 0.02 bbox mAP of the best of the
exhaustive grid (3 types x 4 learning rates = 12 full runs) at no more than a
third of the grid's training iterations. Both are measured here, in the same
run and on the same machine, through the same code as ``tools/tune.py``
(:func:`visdet.choosing.tuning.study.optimize` and ``run_trial``): the grid as
12 enqueued trials of a study without pruning, the pruned study sampling the
same 12 configurations (each type's 4 learning rates, below) with TPE and a
pruner. Printed: both winners, both best mAPs and their difference, both
totals of training iterations (each trial's 'iterations') and their ratio.
Both studies live in ``<work dir>/study.db``, so a stopped benchmark continues.

    python benchmarks/tune_vs_grid.py [--config configs/faster_rcnn_r18_compare.py] [--iters 600]
        [--val-interval 150] [--trials 8] [--pruner sha] [--types AdamW,SGD,Lion] [--work-dir DIR]

A toy run (what the test suite's budget allows, mAP 0 everywhere): ``--iters 2 --val-interval 1 --trials 3
--types SGD``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Each type's fixed hyperparameters (its config's in configs/) and the 4 learning rates of the grid:
#: its config's lr times 1/10, 1/3, 1 and 3, the range a person would sweep by hand.
GRID = {
    "AdamW": (dict(weight_decay=0.05), (1e-4, 3e-4, 1e-3, 3e-3)),
    "SGD": (dict(momentum=0.9, weight_decay=1e-4), (1e-3, 3e-3, 1e-2, 3e-2)),
    "Lion": (dict(betas=(0.9, 0.99), weight_decay=0.15), (1e-5, 3e-5, 1e-4, 3e-4)),
}
#: The claim's thresholds.
MAP_TOLERANCE = 0.02
ITERATION_RATIO = 1 / 3


def build_space(types: list[str]):
    """optimizer = choice over ``types``, each with its 4 learning rates as a choice (the grid's values)."""
    from visdet.choosing.tuning.space import SearchSpace, choice

    options = [dict(type=name, lr=choice(*GRID[name][1]), **GRID[name][0]) for name in types]
    return SearchSpace({"optimizer": choice(*options) if len(options) > 1 else options[0]})


def grid_params(types: list[str]) -> list[dict]:
    """The grid's 12 (or 4 per type) configurations as Optuna parameters, for enqueue_trial."""
    rows = []
    for name in types:
        for lr in GRID[name][1]:
            rows.append({"optimizer": name, f"optimizer.lr[{name}]": lr} if len(types) > 1
                        else {"optimizer.lr": lr})
    return rows


def totals(study) -> dict:
    """Best trial (its params and value) and the iterations and seconds every finished trial trained."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    return dict(trials=len(finished), complete=len(complete),
                iterations=sum(int(t.user_attrs.get("iterations") or 0) for t in finished),
                seconds=round(sum(float(t.user_attrs.get("seconds") or 0) for t in finished), 1),
                best_value=best.value if best else None, best_params=best.params if best else None,
                best_trial=best.number if best else None)


def _winner(row: dict) -> str:
    if row["best_params"] is None:
        return "none (no complete trial)"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["best_params"].items())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--config", default="configs/faster_rcnn_r18_small.py")
    parser.add_argument("--iters", type=int, help="iterations per full run (default: the config's schedule)")
    parser.add_argument("--val-interval", type=int, help="validate every V iterations (default --iters / 4)")
    parser.add_argument("--trials", type=int, default=8, help="finished trials of the pruned study (default 8)")
    parser.add_argument("--pruner", default="sha", help="the pruned study's pruner (default sha)")
    parser.add_argument("--types", default="AdamW,SGD,Lion", help=f"optimizer types, of {', '.join(GRID)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="default: ./work_dirs/tune_vs_grid_<config name>")
    parser.add_argument("--cfg-options", nargs="+", default=[], help="key=value overrides for every run")
    args = parser.parse_args(argv)

    from visdet.choosing.budget import DEFAULT_VALIDATIONS
    from visdet.choosing.tuning import study as studies
    from visdet.choosing.tuning.storage import open_storage
    from visdet.engine.launch import DictAction, load_config

    types = [name.strip() for name in args.types.split(",") if name.strip()]
    unknown = [name for name in types if name not in GRID]
    if unknown:
        parser.error(f"--types: {', '.join(unknown)} not in the grid ({', '.join(GRID)})")
    options = {}
    if args.cfg_options:
        action = DictAction(option_strings=["--cfg-options"], dest="cfg_options")
        namespace = argparse.Namespace()
        action(parser, namespace, args.cfg_options)
        options = namespace.cfg_options
    cfg = load_config(args.config, options)
    studies.seed_trials(cfg, args.seed)  # one configuration trains one way in both studies
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join("work_dirs", f"tune_vs_grid_{name}")
    space = build_space(types)
    storage = open_storage(None, work_dir)
    first_validation = (args.val_interval or max(1, args.iters // DEFAULT_VALIDATIONS)) if args.iters else None
    run = dict(iters=args.iters, val_interval=args.val_interval)

    grid = studies.open_study(storage, "grid", seed=args.seed, pruner="none")
    rows = grid_params(types)
    # A waiting (enqueued, not yet run) trial holds its parameters as 'fixed_params' until it runs.
    already = {tuple(sorted((t.params or t.system_attrs.get("fixed_params") or {}).items())) for t in grid.trials}
    for params in rows:  # enqueued once: a continued benchmark finds them done or waiting
        if tuple(sorted(params.items())) not in already:
            grid.enqueue_trial(params)
    print(f"grid: {len(rows)} full runs ({', '.join(types)} x 4 learning rates), no pruning", flush=True)
    studies.optimize(grid, cfg, space, osp.join(work_dir, "grid"), len(rows), **run)

    pruned = studies.open_study(storage, f"pruned_{args.pruner}_seed{args.seed}", seed=args.seed,
                                pruner=args.pruner, min_resource=first_validation)
    print(f"pruned study: {args.trials} trials, TPE, {args.pruner} pruner", flush=True)
    studies.optimize(pruned, cfg, space, osp.join(work_dir, "pruned"), args.trials, **run)

    result = dict(config=args.config, iters=args.iters, val_interval=args.val_interval, types=types,
                  grid=totals(grid), pruned=totals(pruned), pruner=args.pruner, seed=args.seed)
    g, p = result["grid"], result["pruned"]
    ratio = p["iterations"] / g["iterations"] if g["iterations"] else float("nan")
    seconds_ratio = p["seconds"] / g["seconds"] if g["seconds"] else float("nan")
    diff = (p["best_value"] - g["best_value"]) if None not in (p["best_value"], g["best_value"]) else None
    result.update(iteration_ratio=ratio, seconds_ratio=seconds_ratio, map_difference=diff,
                  claim_holds=diff is not None and diff >= -MAP_TOLERANCE and ratio <= ITERATION_RATIO)
    print(f"grid:   best mAP {g['best_value']}: {_winner(g)} (trial {g['best_trial']}); "
          f"{g['trials']} runs, {g['iterations']} training iterations")
    print(f"pruned: best mAP {p['best_value']}: {_winner(p)} (trial {p['best_trial']}); {p['trials']} trials "
          f"({p['trials'] - p['complete']} pruned), {p['iterations']} training iterations")
    print(f"difference (pruned - grid): {diff if diff is None else f'{diff:+.4f}'} mAP; iterations "
          f"{ratio:.2f} of the grid's (seconds {seconds_ratio:.2f}); claim (within {MAP_TOLERANCE} mAP at "
          f"<= {ITERATION_RATIO:.2f} of the iterations): {'holds' if result['claim_holds'] else 'does not hold'}")
    Path(work_dir, "tune_vs_grid.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
