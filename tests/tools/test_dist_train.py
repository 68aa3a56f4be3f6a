"""tools/dist_train.sh: two DDP processes (gloo, CPU) train the small config; rank 0 alone writes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_the_small_config(tmp_path):
    data, work_dir = f"{tmp_path}/data/", tmp_path / "work"  # fresh data: both ranks start together
    options = [f"embedded_data.root={data}", f"train_dataloader.dataset.data_root={data}",
               f"val_dataloader.dataset.data_root={data}", f"test_dataloader.dataset.data_root={data}",
               f"val_evaluator.ann_file={data}annotations/instances_val.json",
               f"test_evaluator.ann_file={data}annotations/instances_val.json"]
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "tools/dist_train.sh", "configs/faster_rcnn_r18_small.py", "2",
                             "--work-dir", str(work_dir), "--cfg-options", *options],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [p for p in work_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1 and len(list(runs[0].glob("*.log"))) == 1  # one log: rank 0's
    log = next(runs[0].glob("*.log")).read_text()
    assert "Distributed training: True" in log
    # 16 images, 2 per process, 2 processes: 4 iterations an epoch (1 process would take 8).
    assert "Epoch(train) [1][4/4]" in log
    assert (work_dir / "epoch_2.pth").is_file() and (work_dir / "curves.png").is_file()
