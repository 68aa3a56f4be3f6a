# Faster R-CNN R50-FPN on the embedded data with heavyball's SOAP: Adam in the eigenbasis of
# Shampoo's preconditioner, foreach and torch.compile'd (the first iterations compile). Named
# heavyball_SOAP because SOAP is pytorch-optimizer's (docs/optimizers.md).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(optimizer=dict(_delete_=True, type="heavyball_SOAP", lr=3e-4, weight_decay=0.05))
