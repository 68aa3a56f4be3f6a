"""``tools/train.py`` with a SIGKILL at a chosen point: the path users run, cut where a crash would cut it.

Run as a script by the resume tests:
    python kill_train.py WHEN TOOLS_TRAIN_ARGS...
WHEN is ``never``, ``iter:K`` (right after training iteration K and its
checkpoint hooks) or ``val:N`` (right after the N-th validation and every hook
that runs after it, the best-checkpoint save included); ``...:INT`` sends
SIGINT (Ctrl-C) instead of SIGKILL.
"""
import importlib.util
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mmengine.hooks import Hook  # noqa: E402


class KillAt(Hook):
    """SIGKILL (no clean-up at all) or SIGINT at ``when``; LOWEST priority, so after every shipped hook."""

    priority = "LOWEST"

    def __init__(self, when: str) -> None:
        self.kind, at, name = (when.split(":") + ["", ""])[:3]
        self.at = int(at or 0)
        self.signal = signal.SIGINT if name == "INT" else signal.SIGKILL
        self.validations = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.kind == "iter" and runner.iter == self.at:
            os.kill(os.getpid(), self.signal)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.validations += 1
        if self.kind == "val" and self.validations == self.at:
            os.kill(os.getpid(), self.signal)


def main() -> int:
    when, argv = sys.argv[1], sys.argv[2:]
    spec = importlib.util.spec_from_file_location("visdet_train_tool", REPO / "tools" / "train.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    build = tool.build_runner

    def build_with_kill(*args, **kwargs):  # the tool's own runner, plus the kill
        runner = build(*args, **kwargs)
        if when != "never":
            runner.register_hook(KillAt(when))
        return runner

    tool.build_runner = build_with_kill
    return tool.main(argv)


if __name__ == "__main__":
    sys.exit(main())
