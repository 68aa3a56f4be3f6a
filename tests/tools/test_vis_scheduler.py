"""tools/vis_scheduler.py: the schedule of the shipped AdamW config (linear warm-up, then cosine by epoch converted
to iterations), plotted to a PNG and printed, against the closed forms of the two schedulers; config errors exit 2."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import pytest

from testutils import REPO

BASE_LR, WARMUP, ITERS, PER_EPOCH = 3e-4, 100, 1500, 300  # configs/_base_/schedules/adamw_cosine.py, 600 images / 2
ETA_MIN = BASE_LR * 0.01


def _tool():
    spec = importlib.util.spec_from_file_location("vis_scheduler_tool", REPO / "tools" / "vis_scheduler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def adamw_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vis") / "sub" / "adamw.png"
    done = subprocess.run([sys.executable, "tools/vis_scheduler.py", "configs/faster_rcnn_adamw.py", "--out",
                           str(out), "--print"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows: dict[tuple[int, int], tuple[float, float, float]] = {}
    lines = done.stdout.splitlines()
    assert lines[0] == "iter,group,lr,momentum,weight_decay", lines[:3]  # stdout is the CSV alone
    for line in lines[1:]:
        i, g, lr, momentum, decay = line.split(",")
        rows[int(i), int(g)] = (float(lr), float(momentum), float(decay))
    return out, rows, done.stderr


def test_writes_a_png_of_the_whole_run(adamw_run):
    out, rows, stderr = adamw_run
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert f"{ITERS} iterations, 2 parameter groups" in stderr
    assert {i for i, _ in rows} == set(range(ITERS))  # 5 epochs x 300 loader batches, by iteration


def test_printed_values_follow_the_warmup_and_the_cosine_closed_form(adamw_run):
    _, rows, _ = adamw_run
    for group in (0, 1):
        lrs = [rows[i, group][0] for i in range(ITERS)]
        assert math.isclose(lrs[0], BASE_LR * 0.01, rel_tol=1e-6)  # LinearLR's start_factor x the peak
        assert all(a < b for a, b in zip(lrs[:WARMUP], lrs[1:WARMUP]))  # warm-up rises every iteration
        # after warm-up only the cosine acts: (lr_t - eta) = (lr_100 - eta) * (1 + cos(pi t/T)) / (1 + cos(pi 100/T))
        c = lambda t: 1 + math.cos(math.pi * t / ITERS)  # noqa: E731
        for t in (WARMUP, 300, 750, 1200, ITERS - 1):
            expected = ETA_MIN + (lrs[WARMUP] - ETA_MIN) * c(t) / c(WARMUP)
            assert math.isclose(lrs[t], expected, rel_tol=1e-6), t
        assert lrs[WARMUP] > 0.98 * BASE_LR and lrs[-1] < 1.001 * ETA_MIN
        assert {rows[i, group][1] for i in range(ITERS)} == {0.9}  # AdamW's betas[0]
    decays = {group: {rows[i, group][2] for i in range(ITERS)} for group in (0, 1)}
    assert sorted(decays.values(), key=min) == [{0.0}, {0.05}]  # norm and bias: no decay; the rest 0.05


def test_an_iteration_loop_and_a_dataset_size_are_honoured():
    tool = _tool()
    from visdet.engine.launch import load_config

    cfg = load_config(str(REPO / "configs/faster_rcnn_r18_small.py"), {
        "train_cfg": dict(_delete_=True, type="IterBasedTrainLoop", max_iters=12),
        "param_scheduler": [dict(type="MultiStepLR", by_epoch=False, milestones=[4, 8], gamma=0.1)],
        "optim_wrapper.optimizer": dict(_delete_=True, type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)})
    schedule = tool.simulate(cfg, dataset_size=10)
    lrs = [row[0] for row in schedule.values["lr"]]
    assert schedule.iters == 12 and schedule.iters_per_epoch is None
    assert [round(v, 8) for v in lrs] == [0.1] * 4 + [0.01] * 4 + [0.001] * 4
    assert {row[0] for row in schedule.values["momentum"]} == {0.9}  # SGD's own momentum


def test_a_config_mistake_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    status = _tool().main(["configs/faster_rcnn_r18_small.py", "--out", str(tmp_path / "x.png"),
                           "--cfg-options", "optim_wrapper.optimizer.lrr=0.1"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("visdet: configuration error: optim_wrapper.optimizer") and "Traceback" not in err, err
    assert "lrr" in err and "'lr'" in err and not (tmp_path / "x.png").exists()
