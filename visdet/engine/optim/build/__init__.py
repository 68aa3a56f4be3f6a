"""Layer 5, building: checked rules -> per-parameter settings -> merged groups -> optimizer; the
fused/foreach choice, the optim-wrapper constructor and its dry-run report."""
