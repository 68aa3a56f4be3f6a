# Faster R-CNN R50-FPN on the embedded data with AdaLOMO (pytorch-optimizer's): Adafactor-style
# factored second moments, applied to each parameter inside backward as its gradient arrives,
# so the model's gradients are never all held at once (LOMO, Lv et al., 2023). visdet passes it
# the model and drives optimizer.fused_backward(loss, lr) (wrappers/drivers/fused_backward.py).
# It builds its own parameter groups: no paramwise_cfg (frozen parameters are still left alone),
# no accumulative_counts. clip_grad becomes AdaLOMO's clip_grad_norm: a first backward gathers the
# gradient norm (and lets visdet skip a step whose gradients are not finite), the second updates.
# lr is relative: each tensor moves by lr x its RMS (at least lr x 1e-3) per step.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdaLOMO", lr=1e-2, weight_decay=0.0),
    clip_grad=dict(max_norm=10.0),
)
