# Faster R-CNN R50-FPN on the embedded data with bitsandbytes' 8-bit AdamW: the optimizer
# state takes 2 bytes per parameter instead of 8. On CPU bitsandbytes is much slower than
# torch's fused AdamW (see `python tools/list_optimizers.py AdamW8bit`).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="AdamW8bit", lr=3e-4, weight_decay=0.05))
