"""tools/list_optimizers.py as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys

from testutils import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "list_optimizers.py"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_json_with_pattern():
    result = _run("--json", "*adamw*")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert {"AdamW", "AdamW8bit", "bnb_AdamW", "PagedAdamW"} <= names
    # a row matches by its name or by one of its aliases (timm's 'radamw' is RAdam with decoupled decay)
    assert all("adamw" in " ".join([r["name"], *r["aliases"]]).lower() for r in rows)
    assert {"radamw", "fusedadamw"} <= {a for r in rows for a in r["aliases"]}
    assert {"name", "source", "version", "runs_here", "why_not", "state_bytes_per_param", "description"} <= set(rows[0])


def test_table_available_only():
    result = _run("--available")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("name")
    rows = [line for line in lines[2:] if line and not line.startswith(("Why", " "))]
    assert all("  yes  " in row for row in rows[:-1])  # last line is the summary
    assert "run here." in lines[-1]


def test_no_match_exits_nonzero_with_a_message():
    result = _run("zzz*")
    assert result.returncode == 1
    assert "no optimizer name or alias matches 'zzz*'" in result.stderr
