#!/usr/bin/env python
"""Run mmengine's own optimizer tests with visdet's constructor and wrappers in place of mmengine's.

A parity check for developers, never run by the test suite. It takes an
mmengine checkout (a work tree, or a git directory such as a bare mirror),
extracts ``tests/test_optim/test_optimizer/`` at ``--ref`` (default v0.10.7)
into a temporary folder, and runs pytest there with a conftest that puts
visdet's ``OptimWrapperConstructor``, ``OptimWrapper`` and ``AmpOptimWrapper``
where mmengine's tests import and build theirs (``mmengine.optim`` and
mmengine's root registries). Nothing of mmengine is copied into this
repository. The failures that remain are the deliberate differences listed in
docs/optim_wrapper.md ("Differences from mmengine").

Examples:
    python tools/dev/run_mmengine_optim_tests.py /path/to/mmengine
    python tools/dev/run_mmengine_optim_tests.py /path/to/mmengine.git --ref v0.10.7 -- -k constructor
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = "tests/test_optim/test_optimizer"

#: Put into the extracted tests' folder: swaps mmengine's classes for visdet's before the tests import them.
CONFTEST = '''
import mmengine.optim as mm_optim
import mmengine.optim.optimizer as mm_optimizer
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.wrappers.amp_wrapper import AmpOptimWrapper
from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper

for module in (mm_optim, mm_optimizer):
    module.DefaultOptimWrapperConstructor = OptimWrapperConstructor
    module.OptimWrapper = OptimWrapper
    module.AmpOptimWrapper = AmpOptimWrapper
OPTIM_WRAPPER_CONSTRUCTORS.register_module("DefaultOptimWrapperConstructor", module=OptimWrapperConstructor, force=True)
OPTIM_WRAPPERS.register_module("OptimWrapper", module=OptimWrapper, force=True)
OPTIM_WRAPPERS.register_module("AmpOptimWrapper", module=AmpOptimWrapper, force=True)
'''


#: mmengine's wrapper tests use the ``parameterized`` package, which visdet does not install: a stand-in for
#: its one use there, ``@parameterized.expand(cases)`` on a TestCase method (one method per case).
PARAMETERIZED = '''
import functools
import inspect


class parameterized:
    @staticmethod
    def expand(cases):
        def decorate(func):
            namespace = inspect.currentframe().f_back.f_locals  # the class body being executed
            for index, case in enumerate(cases):
                args = tuple(case) if isinstance(case, (tuple, list)) else (case,)

                @functools.wraps(func)
                def method(self, _args=args):
                    return func(self, *_args)

                method.__name__ = f"{func.__name__}_{index}"
                namespace[method.__name__] = method
            return None
        return decorate
'''


def extract(checkout: Path, ref: str, into: Path) -> Path:
    """Write mmengine's optimizer tests at ``ref`` under ``into``; returns their folder."""
    git_dir = checkout / ".git" if (checkout / ".git").exists() else checkout
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", ref, TESTS],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / TESTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="an mmengine checkout or git directory")
    parser.add_argument("--ref", default="v0.10.7", help="the mmengine tag or commit whose tests run")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmengine-optim-tests-") as tmp:
        tests = extract(args.checkout.resolve(), args.ref, Path(tmp))
        (tests / "conftest.py").write_text(CONFTEST)
        try:
            import parameterized  # noqa: F401
        except ImportError:
            (tests / "parameterized.py").write_text(PARAMETERIZED)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--rootdir", str(tests),
                   "-c", "/dev/null", str(tests), *args.pytest_args]
        return subprocess.run(command, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
