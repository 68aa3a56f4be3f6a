"""``tools/train.py --resume`` (no file named) on a work dir: what it resumes, or that there is nothing to resume."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testutils import REPO, data_options

SMALL = "configs/faster_rcnn_r18_small.py"
TINY = ("embedded_data.num_train=2", "embedded_data.num_val=1", "train_cfg.max_epochs=1")  # one iteration


def _train(work_dir: Path, data: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/train.py", SMALL, "--work-dir", str(work_dir), "--resume",
                           "--cfg-options", *data_options(str(data)), *TINY, *options],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_resume_without_a_checkpoint_says_so_and_starts_a_new_run(tmp_path):
    work_dir = tmp_path / "work"
    result = _train(work_dir, tmp_path / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count(f"--resume: no checkpoint in {work_dir}, starting a new run") == 1, output[-3000:]
    assert "None" not in "\n".join(line for line in output.splitlines() if "resum" in line.lower())
    assert "Did not find last_checkpoint" not in output
    assert (work_dir / "epoch_1.pth").is_file()  # the new run trained and saved

    again = _train(work_dir, tmp_path / "data", "train_cfg.max_epochs=2")  # now there is one: it is resumed
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"--resume: resuming from {work_dir / 'epoch_1.pth'}" in again.stdout + again.stderr
    assert "resumed epoch: 1, iter: 1" in again.stdout + again.stderr


def test_an_empty_last_checkpoint_pointer_is_a_one_line_error(tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "last_checkpoint").write_text("")  # a run killed while writing it
    result = _train(work_dir, tmp_path / "data")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "visdet: checkpoint error:" in result.stderr and "last_checkpoint is empty" in result.stderr
    assert "Traceback" not in result.stderr
