# Faster R-CNN R50-FPN on the embedded data with pytorch-optimizer's NorMuon (Muon with a per-neuron
# normalised update). Its use_muon groups are laid out by visdet's constructor with the Muon routing:
# hidden conv kernels and the box head's fully connected layers get the orthogonalised update
# (lr, weight_decay); the stem, norms, biases and the cls/reg output layers its built-in AdamW part
# (adamw_lr, adamw_wd). The paramwise rules scale each part's own base: no decay on norms and biases.
# tools/print_param_groups.py shows which parameter goes where and why.
# On CPU the Newton-Schulz iterations make a step ~3x an AdamW one; on a GPU they cost little.
_base_ = "./faster_rcnn_adamw.py"

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type="NorMuon", lr=0.02, weight_decay=0.01, adamw_lr=3e-4, adamw_wd=0.05),
)
