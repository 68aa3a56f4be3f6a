"""The learning-rate range test (Smith, 2017) inside visdet's own Runner: ``tools/lr_find.py``.

The learning rate rises exponentially from ``start`` to ``end``, one step per
training iteration, through the config's optimizer wrapper and parameter
groups (each group keeps its ratio to the config's lr, so ``lr_mult`` and
layer decay hold); the smoothed loss is recorded until it diverges, then the
weights and optimizer state are put back. ``applicability`` says whether an
optimizer has an lr to sweep and under which config key; ``loop`` is the
sweeping train loop; ``suggestion`` reads an lr off the curve; ``plot`` draws
it; ``range_test`` runs the whole test and writes ``lr_find.json``.
"""
