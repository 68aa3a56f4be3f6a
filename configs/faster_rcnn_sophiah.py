# Faster R-CNN R50-FPN on the embedded data with SophiaH (pytorch-optimizer): Adam-like momentum divided by
# a Hutchinson estimate of the Hessian diagonal, each coordinate's step clipped to lr * p. visdet's
# second-order driver (visdet/engine/optim/wrappers/drivers/second_order.py) back-propagates with
# create_graph=True on the steps that estimate the Hessian (every update_period-th) and switches the RoI
# extractor to its twice-differentiable RoIAlign for them; the other steps cost what AdamW's do.
# Where the Hessian estimate is negative or tiny the step is the clip, lr * p = 2e-4 (AdamW's lr here).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="SophiaH", lr=0.02, p=0.01, betas=(0.96, 0.99), weight_decay=1e-4,
                   update_period=10),
)
