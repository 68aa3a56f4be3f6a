"""tools/compare_optimizers.py end to end on the small config: killed, run again, its table and plots checked."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib.image import imread

from testutils import REPO, data_options

TOOL = REPO / "tools" / "compare_optimizers.py"
CONFIG = "configs/faster_rcnn_r18_small.py"
#: Never runnable in the comparison's one process, on any machine: the catalogue says it needs torch.distributed.
UNRUNNABLE = "ZeroRedundancyOptimizer"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _arguments(work_dir: Path, data: Path) -> list[str]:
    return [str(REPO / CONFIG), "--optimizers", f"AdamW,SGD,{UNRUNNABLE}", "--iters", "4", "--val-interval", "2",
            "--work-dir", str(work_dir), "--cfg-options", *data_options(str(data))]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}


@pytest.fixture
def main():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import compare_optimizers
    finally:
        sys.path.remove(str(REPO / "tools"))
    return compare_optimizers.main


def test_killed_comparison_continues_and_writes_its_table_and_plots(main, tmp_path, capsys):
    work_dir, data = tmp_path / "cmp", tmp_path / "data"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([sys.executable, str(TOOL), *_arguments(work_dir, data)], cwd=REPO, env=_env(),
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sgd_checkpoint = work_dir / "runs" / "SGD" / "iter_2.pth"  # written atomically: complete once it exists
    deadline = time.monotonic() + 400
    while not sgd_checkpoint.exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the second run never saved its first checkpoint"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the comparison and the run it started: no clean-up at all
    first.wait()
    log.close()
    adamw = work_dir / "runs" / "AdamW"
    adamw_before = _files(adamw)
    assert json.loads((adamw / "run_record.json").read_text())["finished"] is True

    status = main(_arguments(work_dir, data))  # run again (in this process: the same code, less start-up)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert status == 0, out[-4000:]
    assert _files(adamw) == adamw_before  # skipped: not retrained, its record and checkpoints untouched
    assert "[1/3] AdamW: best mAP" in out and "(done before, skipped)" in out
    assert "resumed epoch: 0, iter: 2" in out  # mmengine's line: SGD continued from its checkpoint
    assert "[2/3] SGD: best mAP" in out and "(resumed)" in out
    assert f"[3/3] {UNRUNNABLE}: not run: needs torch.distributed" in out

    sgd = json.loads((work_dir / "runs" / "SGD" / "run_record.json").read_text())
    assert sgd["finished"] is True and sgd["resumed_at"] == [2]
    assert [i["iter"] for i in sgd["iterations"]] == [1, 2, 3, 4]  # continued, not restarted
    assert [v["iter"] for v in sgd["validations"]] == [2, 4]  # iteration 2's even if the kill came before it
    seconds = [i["train_s"] for i in sgd["iterations"]]
    assert 0 < seconds[0] < seconds[1] < seconds[2] < seconds[3]  # training time carried over the resume

    result = json.loads((work_dir / "comparison.json").read_text())
    table = {row["optimizer"]: row for row in result["rows"]}
    assert list(table) == ["AdamW", "SGD", UNRUNNABLE]
    for name in ("AdamW", "SGD"):
        row = table[name]
        assert row["status"] == "finished", row
        for column in ("best mAP", "final mAP", "s/iter", "state MiB", "peak MiB"):
            assert isinstance(row[column], float) and math.isfinite(row[column]), (name, column, row)
        assert row["diverged"] == "no"
    assert table["AdamW"]["source"] == "config" and table["SGD"]["source"] == "configs/faster_rcnn_sgd.py"
    assert table["AdamW"]["state MiB"] > table["SGD"]["state MiB"] > 0  # two moments vs one momentum buffer
    assert math.isfinite(result["equal_time_s"])
    assert any(isinstance(row["mAP at T"], float) for row in table.values())  # the shortest run, at least
    assert table[UNRUNNABLE]["status"].startswith("not run: needs torch.distributed")
    assert table[UNRUNNABLE]["best mAP"] is None
    markdown = (work_dir / "comparison.md").read_text()
    assert [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")] == \
        ["| optimizer", "| AdamW", "| SGD", f"| {UNRUNNABLE}"]
    assert markdown in out  # printed at the end
    csv_lines = (work_dir / "comparison.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("optimizer,hyperparameters,source,best mAP")

    assert set(result["plots"]) == {"loss_vs_iter.png", "map_vs_iter.png", "map_vs_time.png"}
    for name, labels in result["plots"].items():
        png = work_dir / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert imread(str(png)).shape[0] > 100  # decodes as an image
        assert labels == ["AdamW", "SGD"]  # one series per trained optimizer


def test_unknown_optimizer_is_refused_before_anything_runs(main, tmp_path, capsys):
    work_dir = tmp_path / "cmp"
    status = main([CONFIG, "--optimizers", "AdamW,Lino", "--work-dir", str(work_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert "--optimizers: unknown optimizer 'Lino'" in err and "did you mean 'Lion'" in err
    assert "Traceback" not in err
    assert not work_dir.exists()


def test_nothing_runnable_is_a_mistake_of_the_command(main, tmp_path, capsys):
    status = main([str(REPO / CONFIG), "--optimizers", UNRUNNABLE, "--work-dir", str(tmp_path / "cmp")])
    err = capsys.readouterr().err
    assert status == 2
    assert f"--optimizers: none of the optimizers can run, so nothing was trained ({UNRUNNABLE}: needs torch" in err
    assert not (tmp_path / "cmp" / "runs").exists()


def test_duplicate_optimizer_is_refused(main, tmp_path, capsys):
    status = main([CONFIG, "--optimizers", "AdamW,SGD,AdamW", "--work-dir", str(tmp_path / "cmp")])
    assert status == 2
    assert "--optimizers: 'AdamW' is given twice" in capsys.readouterr().err


@pytest.mark.parametrize("text, says", [
    ("hparams = dict(SGD=dict(lr=0.1)\n", "cannot be read as a Python config file"),
    ("lrs = dict(SGD=dict(lr=0.1))\n", "must define hparams = dict("),
    ("hparams = dict(SDG=dict(lr=0.1))\n", "did you mean 'SGD'"),
    ("hparams = dict(SGD=0.1)\n", "hparams['SGD'] must be a dict"),
])
def test_malformed_hparams_file_is_refused(main, tmp_path, capsys, text, says):
    path = tmp_path / "hp.py"
    path.write_text(text)
    work_dir = tmp_path / "cmp"
    status = main([CONFIG, "--optimizers", "AdamW,SGD", "--hparams", str(path), "--work-dir", str(work_dir)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "--hparams: " in err and says in err, err
    assert not work_dir.exists()


@pytest.mark.long
def test_a_diverged_run_is_reported_and_not_retried(main, tmp_path, capsys):
    hparams = tmp_path / "hp.py"
    hparams.write_text("hparams = dict(SGD=dict(lr=1e8, momentum=0.9, weight_decay=1e-4))\n")
    arguments = [str(REPO / CONFIG), "--optimizers", "SGD", "--hparams", str(hparams), "--iters", "6",
                 "--work-dir", str(tmp_path / "cmp"), "--cfg-options", "optim_wrapper.max_nonfinite_steps=2",
                 *data_options(str(tmp_path / "data"))]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "[1/1] SGD: diverged: stopped by the non-finite guard" in out
    (row,) = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]
    assert row["diverged"] == "stopped after 2 skipped steps in a row"
    assert row["status"].startswith("diverged: 2 optimizer steps in a row had a non-finite loss")
    record = json.loads((tmp_path / "cmp" / "runs" / "SGD" / "run_record.json").read_text())
    assert record["finished"] is False and record["nonfinite"]["skips"] >= 1  # written at the skip
    assert main(arguments) == 0  # again: the guard would stop it the same way, so it is not retried
    assert "(before, skipped)" in capsys.readouterr().out
