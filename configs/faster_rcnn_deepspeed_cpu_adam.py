# Faster R-CNN R50-FPN on the embedded data with DeepSpeed's CPU Adam (AVX kernels, AdamW mode).
# Its C++ kernel is compiled on first use (~1 minute, cached in ~/.cache/torch_extensions).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="DeepSpeedCPUAdam", lr=3e-4, weight_decay=0.05, adamw_mode=True),
)
