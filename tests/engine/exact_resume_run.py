"""Train the small detector with its shipped hooks, optionally SIGKILL itself, optionally resume; save final params.

Run as a script by test_exact_resume.py:
    python exact_resume_run.py WORK_DIR DATA_ROOT OPTIMIZER KILL_AT fresh|resume iter|epoch [ema]
KILL_AT: ``0`` (never), ``K`` (after training iteration K and its checkpoint) or
``val:N`` (after the N-th validation and its best-checkpoint save).

Every hook of configs/faster_rcnn_r18_small.py stays as shipped (CheckpointHook
with save_best and max_keep_ckpts, CurvePlotHook, ...); only the checkpoint
interval becomes one iteration, so that a kill anywhere resumes mid-epoch.
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from kill_train import KillAt  # noqa: E402  (next to this script)
from mmengine.config import Config  # noqa: E402

from visdet.engine.launch import build_runner, prepare_embedded_data  # noqa: E402

work_dir, data, optimizer, kill_at, mode, loop = sys.argv[1:7]

cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
data = data.rstrip("/") + "/"
cfg.merge_from_dict({"embedded_data.root": data, "train_dataloader.dataset.data_root": data,
                     "val_dataloader.dataset.data_root": data, "test_dataloader.dataset.data_root": data,
                     "val_evaluator.ann_file": data + "annotations/instances_val.json"})
cfg.work_dir = work_dir
if loop == "epoch":  # validation after every epoch, checkpoints every iteration (mid-epoch resume)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=2, val_interval=1)
else:  # validation (and the best-checkpoint save) after iteration 4 and at the end
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=8, val_interval=4)
cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)]
assert cfg.default_hooks.checkpoint.save_best == "coco/bbox_mAP"  # the shipped hook, not a reduced one
cfg.default_hooks.checkpoint.update(interval=1, by_epoch=False)
cfg.optim_wrapper = Config.fromfile(str(REPO / "configs" / f"faster_rcnn_{optimizer}.py")).optim_wrapper
cfg.log_processor = dict(by_epoch=loop == "epoch", window_size=1)
cfg.resume = mode == "resume"
if sys.argv[7:8] == ["ema"]:  # optional 7th argument: the shipped EMA config's hooks (its EMAHook added)
    cfg.custom_hooks = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw_ema.py")).custom_hooks
prepare_embedded_data(cfg)
runner = build_runner(cfg)
if kill_at != "0":
    runner.register_hook(KillAt(kill_at if ":" in kill_at else f"iter:{kill_at}"))
runner.train()
state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
state.update({f"optimizer.{k}": v for k, v in runner.optim_wrapper.state_dict().items() if k == "state"})
for hook in runner._hooks:  # an EMAHook's average (its weights and update count)
    if hasattr(hook, "ema_model"):
        state.update({f"ema.{k}": v.detach().clone() for k, v in hook.ema_model.state_dict().items()})
torch.save(state, os.path.join(work_dir, "final_state.pt"))
print("finished at iteration", runner.iter)
