# Faster R-CNN R50-FPN on the embedded data with Lion (bitsandbytes' implementation, 32-bit state).
# Lion's sign updates are larger than Adam's: the usual rule is lr / 3-10 and weight decay x 3-10.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="Lion", lr=1e-4, betas=(0.9, 0.99), weight_decay=0.15))
