# Faster R-CNN R50-FPN on the embedded data with torchao's 8-bit AdamW: ~2 bytes of optimizer
# state per parameter, in plain PyTorch compiled by torch.compile (no CUDA kernels: it runs on CPU).
# The first iterations compile one kernel per parameter shape (a minute or more on CPU), later ones
# are fast. Named torchao_AdamW8bit because AdamW8bit is bitsandbytes' (docs/optimizers.md).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="torchao_AdamW8bit", lr=3e-4, weight_decay=0.05))
