"""schedulefree: Defazio et al.'s schedule-free AdamW, SGD and RAdam.

They train on one sequence of points and evaluate on another (an average),
switched by ``optimizer.train()`` / ``optimizer.eval()``. In mmengine's Runner
visdet's ``ScheduleFreeHook`` (``visdet/engine/hooks/schedule_free.py``)
makes the switch around training, validation and every checkpoint save;
elsewhere the caller must. The ``*Closure`` variants step with a closure.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.spec import Meta, Need
from visdet.engine.optim.catalog.source import Found, Source

MODULE = "schedulefree"
_MODES = (
    "call optimizer.train() before training steps and optimizer.eval() before evaluating or saving "
    "(visdet's ScheduleFreeHook does both in the Runner); no lr schedule needed, use warmup_steps"
)
_CLOSURE = "step(closure) only; use the variant without 'Closure' in visdet"

CATALOGUE: dict[str, Meta] = {
    "AdamWScheduleFree": Meta("Schedule-free AdamW: iterate averaging instead of an lr schedule", 8, notes=_MODES),
    "AdamWScheduleFreeClosure": Meta(
        "Schedule-free AdamW, closure form", 8, needs=(Need.CLOSURE,), notes=_CLOSURE),
    "AdamWScheduleFreeReference": Meta(
        "Schedule-free AdamW, reference implementation (keeps x, y and z)", 16, notes=_MODES),
    "AdamWScheduleFreePaper": Meta("Schedule-free AdamW exactly as in the paper", 8, notes=_MODES),
    "SGDScheduleFree": Meta("Schedule-free SGD: iterate averaging instead of an lr schedule", 4, notes=_MODES),
    "SGDScheduleFreeClosure": Meta("Schedule-free SGD, closure form", 4, needs=(Need.CLOSURE,), notes=_CLOSURE),
    "SGDScheduleFreeReference": Meta(
        "Schedule-free SGD, reference implementation (keeps x, y and z)", 12, notes=_MODES),
    "RAdamScheduleFree": Meta("Schedule-free RAdam: no warmup and no lr schedule", 8,
                              notes=_MODES + "; makes no update for its first steps (rectification)"),
    "RAdamScheduleFreeClosure": Meta(
        "Schedule-free RAdam, closure form", 8, needs=(Need.CLOSURE,), notes=_CLOSURE),
}


class ScheduleFreeSource(Source):
    """Optimizers exported by ``schedulefree``."""

    def __init__(self) -> None:
        super().__init__(
            package="schedulefree",
            top_level="schedulefree",
            title="schedulefree",
            install_hint="pip install schedulefree",
            prefix="schedulefree_",
            export_modules=(MODULE,),
            known=tuple(Found(n, MODULE) for n in CATALOGUE),
        )

    def meta(self, class_name: str) -> Meta:
        return CATALOGUE.get(class_name, Meta(notes=_MODES))
