"""Training-engine pieces: optimizers and their wrappers (``visdet.engine.optim``)."""
