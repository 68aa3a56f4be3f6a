"""Visualizers and visualisation back-ends (registered in VISUALIZERS/VISBACKENDS)."""
from visdet.visualization.local_visualizer import DetLocalVisualizer

__all__ = ["DetLocalVisualizer"]
