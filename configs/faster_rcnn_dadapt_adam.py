# Faster R-CNN R50-FPN on the embedded data with D-Adaptation Adam: it estimates the step size
# itself, so lr stays 1.0 (a multiplier); the schedule still shapes it.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="DAdaptAdam", lr=1.0, weight_decay=0.05, decouple=True),
)
