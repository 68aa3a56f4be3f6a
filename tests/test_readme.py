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
