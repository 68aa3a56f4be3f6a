# Faster R-CNN R50-FPN on the embedded data with AdamW stepped inside the backward pass
# (InBackwardOptimWrapper): each parameter's AdamW step runs from its post-accumulate-grad
# hook and frees that gradient at once, so the model's gradients never all exist together
# (benchmarks/in_backward_memory.py measures the saving). Same optimizer, groups and schedule
# as faster_rcnn_adamw.py, except gradient clipping: the whole-model norm is not known until
# backward ends, when most parameters have already stepped, so this wrapper refuses clip_grad.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(type="InBackwardOptimWrapper", clip_grad=None)
