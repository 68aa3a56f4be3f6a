"""Import ``mmengine.optim`` once, with its backends' import-time output sent to the debug log.

``mmengine.optim`` (and ``mmengine.model``/``mmengine.hooks``, which import it)
imports bitsandbytes and DeepSpeed, and they print at import (a kernels notice,
"Setting accelerator to CPU"). A module that imports from mmengine's optim,
model or hooks packages imports this module first:

    import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)
"""
from visdet.utils.quiet_import import quiet_import

quiet_import("mmengine.optim")
