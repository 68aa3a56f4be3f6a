# AdamW with linear warmup then cosine decay to 1% of the peak lr, stepped every
# iteration; validation after every epoch. Configs set max_epochs and may change lr.
max_epochs = 5
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=3e-4, weight_decay=0.05),
    # No decay on norm weights and biases (mmdet's and timm's practice for AdamW).
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
# lr tuned for 2 images per step (1 process x batch 2): --auto-scale-lr rescales it for another
# total batch (processes x batch_size x accumulative_counts), linearly as MMDetection does;
# rule='auto' takes the square root for Adam-like optimizers (timm's rule) except under a strategy.
auto_scale_lr = dict(enable=False, base_batch_size=2)
