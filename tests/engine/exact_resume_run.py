"""Train the small detector, optionally SIGKILL itself after iteration K, optionally resume; save final params.

Run as a script by test_exact_resume.py:
    python exact_resume_run.py WORK_DIR DATA_ROOT OPTIMIZER KILL_AT fresh|resume iter|epoch
"""
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

from visdet.engine.launch import build_runner, prepare_embedded_data  # noqa: E402
from visdet.registry import HOOKS  # noqa: E402

work_dir, data, optimizer, kill_at, mode, loop = sys.argv[1:7]


@HOOKS.register_module(force=True)
class KillAfterIteration(Hook):
    """SIGKILL (no clean-up at all) right after iteration ``at`` and its checkpoint."""

    priority = "LOWEST"

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.at and runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
data = data.rstrip("/") + "/"
cfg.merge_from_dict({"embedded_data.root": data, "train_dataloader.dataset.data_root": data,
                     "val_dataloader.dataset.data_root": data, "test_dataloader.dataset.data_root": data,
                     "val_evaluator.ann_file": data + "annotations/instances_val.json"})
cfg.work_dir = work_dir
if loop == "epoch":  # validation after every epoch, checkpoints every iteration (mid-epoch resume)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=2, val_interval=1)
else:
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=8, val_interval=1000)
cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4)]
cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1, by_epoch=False, max_keep_ckpts=2)
cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "CurvePlotHook"]
cfg.custom_hooks.append(dict(type="KillAfterIteration", at=int(kill_at)))
cfg.optim_wrapper = Config.fromfile(str(REPO / "configs" / f"faster_rcnn_{optimizer}.py")).optim_wrapper
cfg.log_processor = dict(by_epoch=loop == "epoch", window_size=1)
cfg.resume = mode == "resume"
prepare_embedded_data(cfg)
runner = build_runner(cfg)
runner.train()
state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
state.update({f"optimizer.{k}": v for k, v in runner.optim_wrapper.state_dict().items() if k == "state"})
torch.save(state, os.path.join(work_dir, "final_state.pt"))
print("finished at iteration", runner.iter)
