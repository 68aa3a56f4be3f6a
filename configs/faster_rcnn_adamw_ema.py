# faster_rcnn_adamw.py with an exponential moving average (EMA) of the weights, in MMDetection's
# YOLOX spelling: mmengine's EMAHook with MMDetection's ExpMomentumEMA (both in visdet's scope).
#   python tools/train.py configs/faster_rcnn_adamw_ema.py
# Validation and the state_dict of every checkpoint (what tools/test.py and a deployment load)
# use the EMA weights; training goes on with the raw weights, which the checkpoint keeps in
# ema_state_dict with the average's update count, so --resume continues both exactly.
#   python tools/test.py configs/faster_rcnn_adamw_ema.py CKPT                  # EMA weights
#   python tools/test.py configs/faster_rcnn_adamw_ema.py CKPT --raw-weights    # raw weights
_base_ = "./faster_rcnn_adamw.py"

# The momentum of update t is (1 - momentum) * exp(-(1 + t) / gamma) + momentum: near 1 at first
# (the average follows the fast-moving early weights), then annealed to `momentum`. YOLOX's gamma
# (2000, the default) is for runs of ~100k iterations; this run has 1,500, and gamma=300 brings the
# momentum down to 0.007 by its end (an average over the last ~150 iterations) instead of 0.47.
# priority=49: just before NORMAL hooks, as in MMDetection (the average is swapped back in before
# CheckpointHook saves after a validation). The custom_hooks list replaces the base's, so the
# default runtime's hooks are repeated first (tests/engine/hooks/test_ema_hook.py checks they match).
custom_hooks = [
    dict(type="CurvePlotHook"), dict(type="MemoryLogHook"), dict(type="PlainCheckpointHook"),
    dict(type="RNGStateHook"), dict(type="ScheduleFreeHook"), dict(type="ZeroConsolidateHook"),
    dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, gamma=300, update_buffers=True, priority=49),
]
