# Faster R-CNN R50-FPN on the embedded data with D-Adaptation Adam: it estimates the step size
# itself, so lr stays 1.0 (a multiplier); the schedule still shapes it.
# With the defaults (d0=1e-6, unbounded growth) the estimate overshoots on this detector within
# a dozen iterations (loss x40 on the small config); growth_rate=1.1 bounds its growth per step
# and d0=1e-4 starts it close enough that the bound costs no time.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="DAdaptAdam", lr=1.0, weight_decay=0.05, decouple=True, d0=1e-4,
                   growth_rate=1.1),
)
