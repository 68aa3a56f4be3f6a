"""Register visdet's optim wrapper constructor and wrappers.

Named in the ``locations`` of ``OPTIM_WRAPPERS`` and
``OPTIM_WRAPPER_CONSTRUCTORS`` (``visdet/registry.py``), so mmengine imports
it on the first build under ``default_scope='visdet'``. It is kept apart from
the package ``__init__`` because ``visdet.registry`` imports that package to
fill ``OPTIMIZERS`` while these modules import ``visdet.registry``.
"""
from visdet.engine.optim.build import constructor, layer_decay_constructor  # noqa: F401
from visdet.engine.optim.wrappers import amp_wrapper, optim_wrapper  # noqa: F401  (imported for registration)
from visdet.engine.optim.wrappers import in_backward  # noqa: F401  (imported for registration)
