# Faster R-CNN R50-FPN on the embedded data with PCGrad (Yu et al., 2020) around SGD + momentum:
# the detector's four losses (RPN classification and box regression, RoI classification and box
# regression) are treated as tasks; where two of their gradients conflict (negative dot product),
# each is projected onto the other's normal plane before they are summed. visdet's loss-list
# driver (visdet/engine/optim/wrappers/drivers/loss_list.py) hands PCGrad the terms: one forward,
# then one backward per term (4 instead of 1, about twice the time of an SGD iteration).
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type="PCGrad", reduction="sum",
        optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)),
)
