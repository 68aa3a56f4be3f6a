"""visdet: MMEngine-style object detection built around a pluggable optimizer subsystem.

Importing visdet is quiet and cheap: optional optimizer backends are
imported only when an optimizer of theirs is first used.
"""
import logging as _logging

# bitsandbytes >= 0.50, on CPUs with AVX512-BF16, tries at import to fetch a 4-bit GEMM kernel from the
# Hugging Face hub through the optional `kernels` package and logs a WARNING to stderr when it cannot.
# visdet has no 4-bit layers and downloads nothing at run time, and mmengine imports bitsandbytes itself
# (outside visdet's quiet imports), so that one logger is set to errors before anything imports it.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

from visdet.registry import OPTIMIZERS  # noqa: E402,F401  fills the registry

__version__ = "0.1.0"
