"""tools/dist_train.sh: two DDP processes (gloo, CPU) train the small config; rank 0 alone writes."""
from __future__ import annotations

from testutils import dist_train, run_log


def test_two_processes_train_the_small_config(tmp_path):
    work_dir = tmp_path / "work"
    dist_train("configs/faster_rcnn_r18_small.py", work_dir, f"{tmp_path}/data/")  # fresh data: ranks start together
    assert len([p for p in work_dir.iterdir() if p.is_dir()]) == 1
    log = run_log(work_dir)  # asserts one log: rank 0's
    assert "Distributed training: True" in log
    # 16 images, 2 per process, 2 processes: 4 iterations an epoch (1 process would take 8).
    assert "Epoch(train) [1][4/4]" in log
    assert (work_dir / "epoch_2.pth").is_file() and (work_dir / "curves.png").is_file()
