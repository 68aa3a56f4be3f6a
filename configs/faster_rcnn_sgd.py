# Faster R-CNN R50-FPN on the embedded data with SGD + momentum (MMDetection's classic recipe,
# lr scaled from 0.02 at batch 16 to batch 2 and raised for training from scratch).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
