# Faster R-CNN R50-FPN on the embedded data with timm's cautious NAdamW: `type="cnadamw"` is timm's
# create_optimizer_v2 name (docs/aliases.md), i.e. timm.optim.NAdamW with caution=True (update entries
# whose sign disagrees with the gradient are masked). The registry name is `NAdamW`; every timm
# spelling (`nadamw`, `cadamw`, `nadamc`...) works as a type. Needs `pip install timm`.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="cnadamw", lr=3e-4, weight_decay=0.05))
