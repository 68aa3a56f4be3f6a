"""A metric that sums what the detector predicts, for telling two sets of weights apart on few images.

The small detector scores a bbox mAP of 0.0 after the few iterations a test
trains, with raw and EMA weights alike; this sum of the predicted scores and
boxes differs between any two sets of weights. Imported by tests (and, through
``custom_imports``, by the tools they run) from this folder.
"""
from __future__ import annotations

from mmengine.evaluator import BaseMetric

from visdet.registry import METRICS


@METRICS.register_module(force=True)
class PredictionFingerprint(BaseMetric):
    """``fingerprint/scores``, ``fingerprint/boxes``: sums over every prediction of the evaluated images."""

    default_prefix = "fingerprint"

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            self.results.append((float(pred["scores"].double().sum()), float(pred["bboxes"].double().sum()),
                                 len(pred["scores"])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        return {"scores": sum(r[0] for r in results), "boxes": sum(r[1] for r in results),
                "count": float(sum(r[2] for r in results))}
