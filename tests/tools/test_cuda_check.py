"""tools/cuda_check.sh checked on any machine: its dry run (no install, tests collected, benchmark options
checked), a failing phase that does not stop the others, and its refusal to pretend without CUDA."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from testutils import REPO

SCRIPT = "tools/cuda_check.sh"
PHASES = ("install", "device", "tests", "detector_speed", "optimizer_step")


def _run(tmp_path: Path, *args: str, tests: str = "tests/engine/optim/test_cuda_paths.py"
         ) -> subprocess.CompletedProcess:
    """The script with its log in tmp_path and its test run limited to ``tests`` (a whole-suite collection
    takes ~20 s here)."""
    env = {**os.environ, "CUDA_CHECK_LOG_DIR": str(tmp_path / "logs"), "CUDA_CHECK_TESTS": tests,
           "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_CHECK_DRY_RUN", None)
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=180)


def _log(tmp_path: Path, result: subprocess.CompletedProcess) -> str:
    """The log the script names on its last line; it holds what the script printed."""
    named = Path(result.stdout.strip().splitlines()[-1].removeprefix("log: "))
    assert named.parent == tmp_path / "logs" and named.is_file(), result.stdout[-500:]
    text = named.read_text()
    assert text == result.stdout
    return text


def test_dry_run_runs_every_phase_without_cuda_and_writes_the_log(tmp_path):
    result = _run(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    log = _log(tmp_path, result)
    for phase in PHASES:  # each phase ran and said how long it took
        assert re.search(rf"^=== {phase}: .* \(\d+s\)$", log, re.M), phase
    assert "=== install: skipped (dry run" in log
    assert "torch.cuda.is_available()" in log or "compute capability" in log  # the device report
    assert "-m cuda" in log and "--collect-only" in log
    assert re.search(r"test_cuda_paths\.py::test_\w+", log) and re.search(r"^\s+tests: \d+ tests? collected", log, re.M)
    assert "would run .venv/bin/python benchmarks/detector_speed.py --device cuda --iters 10" in log
    assert "benchmarks/optimizer_step.py takes --device" in log
    assert "every phase passed" in log


def test_a_failing_phase_is_reported_and_the_others_still_run(tmp_path):
    result = _run(tmp_path, "--dry-run", tests="tests/no_such_test_file.py")
    assert result.returncode == 1, result.stdout[-3000:]
    log = _log(tmp_path, result)
    assert re.search(r"^=== tests: FAILED: exit status [1-9]\d*", log, re.M)
    assert "=== optimizer_step: dry run: options checked" in log  # the benchmarks' phases came after it
    assert "FAILED: tests" in log.split("=== summary")[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_stops_before_testing_and_says_why(tmp_path):
    result = _run(tmp_path, "--skip-install")
    assert result.returncode == 1
    log = _log(tmp_path, result)
    assert "=== device: FAILED: no usable CUDA device" in log and "nothing was tested" in log
    assert "=== tests" not in log and "FAILED: device" in log


def test_an_unknown_argument_is_refused(tmp_path):
    result = _run(tmp_path, "--dryrun")
    assert result.returncode == 2 and "unknown argument '--dryrun'" in result.stderr
    assert not (tmp_path / "logs").exists()
