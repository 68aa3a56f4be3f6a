# Faster R-CNN R50-FPN on the embedded data with L-BFGS (torch.optim.LBFGS), driven by visdet's
# closure driver (visdet/engine/optim/wrappers/drivers/closure.py). max_iter=1 without a line search
# makes one iteration one evaluation, and the driver's first pass is that evaluation: the cost of SGD
# plus the two-loop recursion over history_size curvature pairs. Each extra inner iteration
# (max_iter) or line-search evaluation (line_search_fn="strong_wolfe", up to 25 a step) is one more
# forward+backward. L-BFGS is a full-batch method and takes one parameter group (no paramwise rules);
# on changing mini-batches its curvature pairs disagree, so keep lr small.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="LBFGS", lr=0.5, max_iter=1, history_size=10),
)
