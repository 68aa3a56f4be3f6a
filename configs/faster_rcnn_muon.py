# Faster R-CNN R50-FPN on the embedded data with Muon: hidden 2-D weights (the box head's fully
# connected layers and, with flatten_conv=True, conv kernels seen as matrices) get Muon's
# orthogonalised updates; everything else (stem, norms, biases, the cls/reg output layers)
# gets the AdamW fallback. adjust_lr_fn='match_rms_adamw' lets one lr serve both.
# On CPU Muon's Newton-Schulz iterations are slow; on a GPU they cost little.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="Muon", lr=3e-4, weight_decay=0.05, adjust_lr_fn="match_rms_adamw",
                   flatten_conv=True),
)
