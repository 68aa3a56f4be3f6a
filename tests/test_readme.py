"""The README's two fresh-machine commands, and CI running the same test command."""
from __future__ import annotations

import re

from testutils import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_two_setup_commands():
    text = (REPO / "README.md").read_text()
    first_block = text.index("```")
    assert text.count("```bash") >= 2
    main, tests = _commands()[:2]
    assert main.startswith("bash tools/setup_env.sh && ") and "tools/" in main
    assert tests.startswith("bash tools/setup_env.sh && ") and "pytest" in tests
    assert first_block < text.index("## ")  # commands come before any section


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci


def test_main_command_script_exists():
    main = _commands()[0]
    script = main.split("&&")[-1].split()[1]
    assert (REPO / script).is_file()


def test_main_command_trains_the_main_config():
    main = _commands()[0]
    assert main.endswith("tools/train.py configs/faster_rcnn_adamw.py")
    assert (REPO / "configs" / "faster_rcnn_adamw.py").is_file()


_DURATION = re.compile(r"\b\d+(?:[.,]\d+)?(?:-\d+(?:\.\d+)?)?\s?(?:ms|s|min|minutes)\b")
_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def _paragraphs() -> list[str]:
    text = (REPO / "README.md").read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # command output is not a claim
    paragraphs: list[str] = []
    for paragraph in (p for p in re.split(r"\n\s*\n", text) if p.strip()):
        if paragraph.lstrip().startswith("|") and paragraphs:  # a table belongs to the caption above it
            paragraphs[-1] += "\n" + paragraph
        else:
            paragraphs.append(paragraph)
    return paragraphs


def test_every_timing_in_the_readme_says_when_and_where_it_was_measured():
    """Machines of one kind differ by 50% or more: a bare duration is a promise nobody can check."""
    bare = [p.strip()[:120] for p in _paragraphs() if _DURATION.search(p) and not _DATE.search(p)]
    assert not bare, f"durations without the date/machine they were measured on: {bare}"


def test_the_main_job_duration_points_to_the_estimate_for_this_machine():
    main_job = next(p for p in _paragraphs() if "bbox mAP 0.589" in p)
    assert "benchmarks/main_job_estimate.py" in main_job
    assert (REPO / "benchmarks" / "main_job_estimate.py").is_file()
