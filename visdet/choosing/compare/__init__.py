"""Compare optimizers on one config: ``tools/compare_optimizers.py`` (selection, settings, runs, table, plots)."""
