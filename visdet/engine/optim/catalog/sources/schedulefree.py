"""schedulefree: Defazio et al.'s schedule-free AdamW, SGD and RAdam.

They train on one sequence of points and evaluate on another (an average),
switched by ``optimizer.train()`` / ``optimizer.eval()``. In mmengine's Runner
visdet's ``ScheduleFreeHook`` (``visdet/engine/hooks/schedule_free.py``)
makes the switch around training, validation and every checkpoint save;
elsewhere the caller must. The ``*Closure`` variants step with a closure.
"""
from __future__ import annotations

from visdet.engine.optim.catalog.notes import SCHEDULE_FREE_MODES
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.spec import Need, facts

_MODES = SCHEDULE_FREE_MODES + "; no lr schedule needed, use warmup_steps"
_CLOSURE = ("step(closure): visdet's closure driver re-runs forward and backward for it; the variant without "
            "'Closure' needs one pass per step")

SOURCE = Source(
    rank=70, package="schedulefree",
    default=facts(notes=_MODES),
    specs={
        "AdamWScheduleFree": facts("Schedule-free AdamW: iterate averaging instead of an lr schedule", 8, notes=_MODES),
        "AdamWScheduleFreeClosure": facts(
            "Schedule-free AdamW, closure form", 8, needs=(Need.CLOSURE,), notes=_CLOSURE),
        "AdamWScheduleFreeReference": facts(
            "Schedule-free AdamW, reference implementation (keeps x, y and z)", 16, notes=_MODES),
        "AdamWScheduleFreePaper": facts("Schedule-free AdamW exactly as in the paper", 8, notes=_MODES),
        "SGDScheduleFree": facts("Schedule-free SGD: iterate averaging instead of an lr schedule", 4, notes=_MODES),
        "SGDScheduleFreeClosure": facts("Schedule-free SGD, closure form", 4, needs=(Need.CLOSURE,), notes=_CLOSURE),
        "SGDScheduleFreeReference": facts(
            "Schedule-free SGD, reference implementation (keeps x, y and z)", 12, notes=_MODES),
        "RAdamScheduleFree": facts("Schedule-free RAdam: no warmup and no lr schedule", 8,
                                   notes=_MODES + "; makes no update for its first steps (rectification)"),
        "RAdamScheduleFreeClosure": facts(
            "Schedule-free RAdam, closure form", 8, needs=(Need.CLOSURE,), notes=_CLOSURE),
    },
)
