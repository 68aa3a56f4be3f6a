"""Visualizers and visualisation back-ends (registered in VISUALIZERS/VISBACKENDS)."""
