"""Peak memory of one training iteration: OptimWrapper against InBackwardOptimWrapper, in the same run.

    python benchmarks/in_backward_memory.py [--config configs/faster_rcnn_adamw.py] [--batch 2]

The model, data pipeline and AdamW groups are the config's (R50-FPN Faster R-CNN
by default, on the embedded data, generated on first use in a temporary
folder). Each wrapper gets its own copy of the same initial model and does one
warm-up iteration first (AdamW's state then exists and no gradient is left), and
then one measured iteration: forward, backward, step, zero_grad.

How memory is measured: on CUDA, ``torch.cuda.max_memory_allocated``. On CPU,
torch's profiler with ``profile_memory=True`` records every allocation and free
of torch's CPU allocator (``[memory]`` events with their byte counts); their
running sum in time order is the bytes allocated since the iteration began,
and its maximum is the iteration's peak. ``tracemalloc`` would not see them
(torch allocates outside Python's allocator). The absolute peak adds the bytes
live when the iteration starts (parameters, buffers, optimizer state). The
expected saving is about the size of the gradients, printed too.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

MIB = 2**20


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _live_bytes(model: torch.nn.Module, wrapper) -> int:
    """Parameters, buffers and optimizer state tensors live now."""
    state = [v for s in wrapper.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return _tensor_bytes([*model.parameters(), *model.buffers(), *state, *(p.grad for p in model.parameters())])


def _iteration(model, batch, wrapper) -> None:
    from visdet.engine.optim.wrappers.train_step import train_step

    torch.manual_seed(1)
    train_step(model, batch, wrapper)


def _peak_cpu(model, batch, wrapper) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _iteration(model, batch, wrapper)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def _peak_cuda(model, batch, wrapper) -> int:
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    _iteration(model, batch, wrapper)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "faster_rcnn_adamw.py"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from visdet.datasets.embedded import EmbeddedDataSpec, ensure
    from visdet.engine.optim.wrappers.builder import build_optim_wrapper
    from visdet.registry import DATASETS, MODELS

    init_default_scope("visdet")
    cfg = Config.fromfile(args.config)
    root = str(Path(tempfile.mkdtemp()) / "shapes")
    ensure(root, EmbeddedDataSpec.from_cfg({**cfg.embedded_data, "num_train": args.batch, "num_val": 1}))
    cfg.train_dataloader.dataset.data_root = root
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in range(args.batch)])
    torch.manual_seed(0)
    base = MODELS.build(cfg.model).to(args.device)
    base.train()
    optim_cfg = {**cfg.optim_wrapper, "clip_grad": None}  # the in-backward wrapper cannot clip; neither does this

    grad_bytes = sum(p.numel() * p.element_size() for p in base.parameters() if p.requires_grad)
    results = {}
    for wrapper_type in ("OptimWrapper", "InBackwardOptimWrapper"):
        model = copy.deepcopy(base)
        wrapper = build_optim_wrapper(model, {**optim_cfg, "type": wrapper_type})
        _iteration(model, batch, wrapper)  # warm-up: AdamW's state exists afterwards
        wrapper.zero_grad()
        live = _live_bytes(model, wrapper)
        peak = _peak_cuda(model, batch, wrapper) if args.device == "cuda" else _peak_cpu(model, batch, wrapper)
        results[wrapper_type] = (live, peak)
        del model, wrapper

    method = "torch.cuda.max_memory_allocated" if args.device == "cuda" else "torch.profiler CPU allocator events"
    print(f"config {Path(args.config).name}, batch {args.batch}, device {args.device}, measured by {method}")
    print(f"gradients (the expected saving): {grad_bytes / MIB:.1f} MiB")
    for name, (live, peak) in results.items():
        print(f"{name:>24}: peak during the iteration {peak / MIB:8.1f} MiB above the {live / MIB:.1f} MiB live "
              f"at its start (absolute {(live + peak) / MIB:.1f} MiB)")
    (live0, peak0), (live1, peak1) = results["OptimWrapper"], results["InBackwardOptimWrapper"]
    print(f"in-backward / plain: {(live1 + peak1) / (live0 + peak0):.3f} of the absolute peak, "
          f"{peak1 / peak0:.3f} of the iteration's own; saved {(peak0 - peak1) / MIB:.1f} MiB "
          f"({(peak0 - peak1) / grad_bytes:.2f} x the gradients)")


if __name__ == "__main__":
    main()
