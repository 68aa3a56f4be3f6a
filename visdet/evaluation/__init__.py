"""Detection metrics (registered in METRICS)."""
