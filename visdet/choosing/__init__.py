"""Choosing an optimizer: compare several on one config, find a learning rate, tune with Optuna.

The engine trains one config; this package runs it several times and reads the
runs' records (``compare/``), sweeps the learning rate inside one run
(``lr_finder/``) or lets Optuna sample configs and prune weak trials
(``tuning/``). It sits above ``visdet.engine`` and nothing below imports it.
The entry points are ``tools/compare_optimizers.py``, ``tools/lr_find.py`` and
``tools/tune.py``; docs/choosing_an_optimizer.md is the user's guide.
"""
