# Faster R-CNN R50-FPN on the embedded data with Adafactor (torch.optim.Adafactor, registered as
# TorchAdafactor): factored second moments, no first moment, so almost no optimizer state.
# Its lr is relative to each parameter's RMS.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="TorchAdafactor", lr=1e-2, weight_decay=0.0))
