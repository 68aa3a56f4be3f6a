# DeepSpeed ZeRO stage 1 (optimizer states partitioned across processes) through mmengine's
# FlexibleRunner. Pair it with optim_wrapper=dict(type="DeepSpeedOptimWrapper", optimizer=...):
# the optimizer is built by visdet's constructor (visdet's OPTIMIZERS registry, paramwise_cfg)
# and handed to deepspeed.initialize, which wraps it. Gradient clipping is DeepSpeed's own
# (strategy.gradient_clipping), not optim_wrapper.clip_grad. See docs/distributed.md.
runner_type = "FlexibleRunner"
strategy = dict(
    type="DeepSpeedStrategy",
    zero_optimization=dict(stage=1),
    gradient_clipping=10.0,
)
