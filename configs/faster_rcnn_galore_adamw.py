# Faster R-CNN R50-FPN on the embedded data with GaLore AdamW (galore-torch): the Adam moments of the
# box head's two big fully-connected layers live in a rank-64 projection of their gradients
# (12544x1024 and 1024x1024 weights: most of the detector's parameters); every other parameter
# (convolutions, norms, biases, the classifier) is plain AdamW. low_rank names the modules whose
# 2-D weights are projected (see docs/optimizers.md).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="GaLoreAdamW", lr=3e-4, weight_decay=0.05, no_deprecation_warning=True),
    low_rank=dict(target_modules=["roi_head.bbox_head.shared_fcs"], rank=64, update_proj_gap=200, scale=0.25,
                  proj_type="std"),
)
