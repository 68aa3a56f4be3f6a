# Faster R-CNN R50-FPN on the embedded data with Lookahead around AdamW (Zhang et al., 2019):
# AdamW takes k=6 fast steps, then the weights move alpha=0.5 of the way from the slow copy
# toward them and the fast weights restart there. A wrapper optimizer is configured by nesting
# the optimizer it wraps under the keyword its class takes it by (visdet/engine/optim/config/
# nested_optimizer.py); paramwise_cfg applies to AdamW's groups, the lr schedule to AdamW's lr.
# The timm spelling type='lookahead_adamw' builds the same.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type="Lookahead", k=6, alpha=0.5,
        optimizer=dict(type="AdamW", lr=3e-4, weight_decay=0.05)),
)
