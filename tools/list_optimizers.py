#!/usr/bin/env python
"""List every optimizer visdet knows: source, version, whether it runs here and why not.

Examples:
    python tools/list_optimizers.py                 # table of everything
    python tools/list_optimizers.py '*adam*'        # filter by name pattern
    python tools/list_optimizers.py adamw_torch_fused   # an alias finds its target (docs/aliases.md)
    python tools/list_optimizers.py --available     # only what runs on this machine
    python tools/list_optimizers.py --json          # for machines
    python tools/list_optimizers.py --verify        # also import each backend to prove it loads
"""
from __future__ import annotations

import argparse
import json
import sys

from visdet.engine.optim.catalog.listing import alias_status, format_table, list_optimizers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", help="shell-style name filter, case-insensitive, e.g. '*adam*'")
    parser.add_argument("--available", action="store_true", help="show only optimizers that run here now")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--verify", action="store_true",
        help="import each installed backend (quietly, seconds each) so a broken install is reported",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    infos = list_optimizers(args.pattern, available=args.available, verify=args.verify)
    if args.json:
        json.dump([i.as_dict() for i in infos], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(infos))
        runnable = sum(i.runs_here for i in infos)
        print(f"\n{len(infos)} optimizers listed, {runnable} run here.")
    if args.pattern and not infos:
        status = alias_status(args.pattern)
        print(status or f"no optimizer name or alias matches {args.pattern!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
