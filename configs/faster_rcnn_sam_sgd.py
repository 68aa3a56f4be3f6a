# Faster R-CNN R50-FPN on the embedded data with SAM (sharpness-aware minimisation) around SGD + momentum.
# Each step runs two forward+backward passes on the batch (visdet's closure driver,
# visdet/engine/optim/wrappers/drivers/closure.py): one at the weights, one at the weights
# perturbed by rho along the gradient; SGD steps the original weights with the second gradient.
# closure_interval=N would perturb every N-th step only, with plain SGD steps in between.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type="SAM", rho=0.05,
        base_optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
