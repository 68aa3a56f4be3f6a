# Faster R-CNN R50-FPN on the embedded data with schedule-free AdamW (the schedulefree package):
# no lr schedule, it averages its iterates instead, with its own linear warmup (warmup_steps).
# The ScheduleFreeHook of _base_/default_runtime.py puts it in eval mode (the averaged weights)
# for every validation and checkpoint and back in train mode to train; checkpoints hold the
# averaged weights and resume correctly.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="AdamWScheduleFree", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   warmup_steps=100),
)
# Constant lr: the optimizer's warmup_steps replaces the base config's LinearLR + cosine.
param_scheduler = []
