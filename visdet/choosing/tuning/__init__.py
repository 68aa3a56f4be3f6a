"""Tuning with Optuna: a search space file, one trial's training run with pruning, and the study around them.

``space.py`` reads and checks a search space and turns a trial's sample into a
config; ``trial_run.py`` trains one trial in this process, reporting each
validation's mAP to Optuna so it can prune weak trials. The study (storage,
sampler, pruner, outputs) and ``tools/tune.py`` are built on those two.
Optuna is an optional dependency (``pip install -e ".[tune]"``) and is imported
only where a trial needs it.
"""
