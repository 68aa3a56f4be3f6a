#!/usr/bin/env python
"""pycocotools' COCOeval against faster-coco-eval's COCOeval_faster on the same detections: figures and time.

Issue 17 asks whether CocoMetric may swap pycocotools' evaluator for
faster-coco-eval's: only if the figures are the same. For each case both
evaluators get the same ground truth and the same detection records, and run
the path ``CocoMetric.compute_metrics`` runs (``loadRes``, the evaluator with
``params.imgIds``/``catIds`` set, ``evaluate``, ``accumulate``, ``summarize``,
the printout captured); the ground-truth index is built once beforehand, as
CocoMetric builds it once in ``__init__``. Printed per case: both 12-number
``stats``, whether they are identical exactly and to the 3 decimals CocoMetric
reports, the largest difference, how many entries of the precision / recall
arrays differ (and by what), and each evaluator's median time over
``--repeats`` interleaved runs with their ratio (faster-coco-eval / pycocotools).

Cases (detections drawn from the ground truth with a fixed seed: jittered
copies, label swaps, misses, false positives, images left without detections,
scores rounded to float32 as the detector's are):

* ``val-N``: the main job's validation annotations (configs/faster_rcnn_adamw.py's
  ``embedded_data``: 100 images of 160 px, 4 classes), generated in a temporary
  folder (the val split is drawn from its own random stream, so generating only
  one training image leaves it the same), with N detections an image (the
  detector keeps at most ``max_per_img=100``); ``val-100-ties`` rounds scores
  to steps of 0.05, so many tie (stable-sort order matters).
* ``large``: ``--large-images`` synthetic 640x480 images with up to 15 objects
  of 8 to 300 px, some crowd regions, some images without any ground truth.

    python benchmarks/coco_eval_speed.py [--repeats 5] [--large-images 1000] [--large-dets 100]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NUM_CLASSES = 4
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ---------------------------------------------------------------- data
def embedded_val_gt() -> dict:
    """The main job's val annotation json (the main config's embedded_data, one training image)."""
    from mmengine.config import Config

    from visdet.datasets.embedded import EmbeddedDataSpec, generate

    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py"))
    spec = EmbeddedDataSpec.from_cfg({**dict(cfg.embedded_data), "num_train": 1})
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "shapes", spec)
        return json.loads((Path(tmp) / "shapes" / "annotations" / "instances_val.json").read_text())


def synthetic_gt(num_images: int, seed: int, width: int = 640, height: int = 480, max_objects: int = 15,
                 crowd_fraction: float = 0.03, empty_fraction: float = 0.05) -> dict:
    """A COCO ground truth of random boxes in all 4 classes, small to large, with crowds and empty images."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append(dict(id=image_id, width=width, height=height, file_name=f"{image_id:06d}.jpg"))
        count = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_objects + 1))
        for _ in range(count):
            w, h = np.exp(rng.uniform(np.log(8), np.log(300), 2))
            x, y = rng.uniform(0, width - min(w, width - 1)), rng.uniform(0, height - min(h, height - 1))
            w, h = min(w, width - x), min(h, height - y)
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, bbox=[x, y, w, h], area=w * h,
                                    category_id=int(rng.integers(1, NUM_CLASSES + 1)),
                                    iscrowd=int(rng.random() < crowd_fraction)))
    categories = [dict(id=i + 1, name=f"class{i}") for i in range(NUM_CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)


def synthetic_detections(gt: dict, per_image: int, seed: int, miss: float = 0.15, swap: float = 0.1,
                         no_detections: float = 0.05, score_step: float | None = None) -> list[dict]:
    """Up to ``per_image`` COCO result records an image: jittered ground truth plus false positives.

    Each object is missed with probability ``miss``, else found 1-3 times (box
    jittered by ~10% of its size, label swapped with probability ``swap``); the
    rest are false positives of random size and class, scored lower on
    average. A fraction ``no_detections`` of the images gets none. Scores are
    float32 values (the detector's dtype), rounded to ``score_step`` when given.
    """
    rng = np.random.default_rng(seed)
    by_image: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = []
    for image in gt["images"]:
        if rng.random() < no_detections:
            continue
        width, height = image["width"], image["height"]
        found = []
        for ann in by_image.get(image["id"], []):
            if rng.random() < miss:
                continue
            x, y, w, h = ann["bbox"]
            for _ in range(int(rng.integers(1, 4))):
                jx, jy, jw, jh = rng.normal(0.0, 0.1, 4) * (w, h, w, h)
                label = ann["category_id"] if rng.random() > swap else int(rng.integers(1, NUM_CLASSES + 1))
                found.append(([x + jx, y + jy, max(w + jw, 1.0), max(h + jh, 1.0)], 0.3 + 0.7 * rng.random(), label))
        while len(found) < per_image:
            w, h = np.exp(rng.uniform(np.log(4), np.log(min(width, height)), 2))
            x, y = rng.uniform(0, width - w + 1), rng.uniform(0, height - h + 1)
            found.append(([x, y, w, h], 0.6 * rng.random(), int(rng.integers(1, NUM_CLASSES + 1))))
        for box, score, label in found[:per_image]:
            score = round(score / score_step) * score_step if score_step else score
            records.append(dict(image_id=image["id"], bbox=[float(v) for v in box],
                                score=float(np.float32(score)), category_id=label))
    return records


# ---------------------------------------------------------------- evaluation
def gt_index(backend: str, gt: dict):
    """The backend's COCO index over a private copy of ``gt`` (evaluation writes into annotations)."""
    dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.coco import COCO

            coco = COCO()
            coco.dataset = dataset
            coco.createIndex()
            return coco
        from faster_coco_eval import COCO

        return COCO(dataset)


def evaluate(backend: str, coco_gt, records: list[dict]) -> tuple[object, float, str]:
    """CocoMetric's path on ``records``: the evaluator, the seconds it took and what it printed."""
    if backend == "pycocotools":
        from pycocotools.cocoeval import COCOeval as evaluator_class
        kwargs = {}
    else:
        from faster_coco_eval import COCOeval_faster as evaluator_class
        kwargs = {"print_function": print}  # its default is logging.info; CocoMetric captures stdout
    records = [dict(r) for r in records]  # loadRes adds keys to the records it is given
    img_ids = sorted(img["id"] for img in coco_gt.dataset["images"])
    cat_ids = [cat["id"] for cat in coco_gt.dataset["categories"]]
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        coco_dt = coco_gt.loadRes(records)
        evaluator = evaluator_class(coco_gt, coco_dt, "bbox", **kwargs)
        evaluator.params.catIds = cat_ids
        evaluator.params.imgIds = img_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, time.perf_counter() - start, out.getvalue()


@dataclass
class Comparison:
    exact: bool
    max_abs: float
    three_decimals: bool
    precision_diff: int  # entries of eval['precision'] that differ
    precision_size: int
    precision_values: str  # the differing values, pycocotools -> faster-coco-eval
    recall_diff: int
    summary_same: bool  # the 12 'Average Precision/Recall' lines CocoMetric logs
    summary_extra: list[str]  # summary lines only faster-coco-eval prints


def summary_lines(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if line.lstrip().startswith("Average")]


def compare(ref, other, ref_printed: str = "", other_printed: str = "") -> Comparison:
    """Compare two evaluators' ``stats``, accumulated ``precision`` / ``recall`` arrays and printed summaries."""
    a, b = np.asarray(ref.stats, float)[:12], np.asarray(other.stats, float)[:12]
    p, q = np.asarray(ref.eval["precision"]), np.asarray(other.eval["precision"])
    differs = p != q
    pairs = sorted({(float(x), float(y)) for x, y in zip(p[differs], q[differs])})
    shown = ", ".join(f"{x!r} -> {y!r}" for x, y in pairs[:3]) + (", ..." if len(pairs) > 3 else "")
    return Comparison(
        exact=bool(np.array_equal(a, b)), max_abs=float(np.max(np.abs(a - b))),
        three_decimals=[round(float(v), 3) for v in a] == [round(float(v), 3) for v in b],
        precision_diff=int(differs.sum()), precision_size=int(p.size), precision_values=shown,
        recall_diff=int((np.asarray(ref.eval["recall"]) != np.asarray(other.eval["recall"])).sum()),
        summary_same=summary_lines(ref_printed) == summary_lines(other_printed)[:len(summary_lines(ref_printed))],
        summary_extra=summary_lines(other_printed)[len(summary_lines(ref_printed)):])


def run_case(name: str, gt: dict, records: list[dict], repeats: int) -> Comparison:
    """Evaluate ``records`` with both backends ``repeats`` times (alternating which goes first); print."""
    backends = ("pycocotools", "faster-coco-eval")
    index = {b: gt_index(b, gt) for b in backends}
    times: dict[str, list[float]] = {b: [] for b in backends}
    last, printed = {}, {}
    for rep in range(repeats):
        for backend in backends if rep % 2 == 0 else backends[::-1]:
            last[backend], seconds, printed[backend] = evaluate(backend, index[backend], records)
            times[backend].append(seconds)
    result = compare(last["pycocotools"], last["faster-coco-eval"], printed["pycocotools"],
                     printed["faster-coco-eval"])
    median = {b: statistics.median(times[b]) for b in backends}
    print(f"\n== {name}: {len(gt['images'])} images, {len(gt['annotations'])} ground truth boxes, "
          f"{len(records)} detections")
    for backend in backends:
        stats = " ".join(f"{v:.16f}" for v in np.asarray(last[backend].stats, float)[:12])
        print(f"  {backend:>16}: {stats}")
    print(f"  identical: exactly {result.exact} (largest difference {result.max_abs:.3g}); "
          f"to 3 decimals {result.three_decimals}")
    print(f"  precision entries that differ: {result.precision_diff} of {result.precision_size}"
          + (f" ({result.precision_values})" if result.precision_diff else "")
          + f"; recall entries that differ: {result.recall_diff}")
    print(f"  printed summary: pycocotools' 12 lines identical {result.summary_same}; faster-coco-eval adds "
          f"{len(result.summary_extra)}" + "".join(f"\n    {line}" for line in result.summary_extra))
    print(f"  time (median of {repeats}): pycocotools {median['pycocotools']:.3f} s, faster-coco-eval "
          f"{median['faster-coco-eval']:.3f} s, ratio {median['faster-coco-eval'] / median['pycocotools']:.2f}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-dets", default="10,30,100", help="detections an image for the val cases")
    parser.add_argument("--large-images", type=int, default=1000)
    parser.add_argument("--large-dets", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        import faster_coco_eval
        import pycocotools  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"{err}: both pycocotools and faster-coco-eval are needed "
                         "(pip install faster-coco-eval)") from err
    from importlib.metadata import version

    print(f"pycocotools {version('pycocotools')}, faster-coco-eval {faster_coco_eval.__version__}, "
          f"numpy {np.__version__}")
    val = embedded_val_gt()
    results = {}
    for per_image in (int(v) for v in args.val_dets.split(",")):
        results[f"val-{per_image}"] = run_case(f"val-{per_image}", val,
                                               synthetic_detections(val, per_image, args.seed), args.repeats)
    results["val-100-ties"] = run_case("val-100-ties", val, synthetic_detections(
        val, 100, args.seed + 1, score_step=0.05), args.repeats)
    if args.large_images:
        large = synthetic_gt(args.large_images, args.seed)
        results["large"] = run_case(f"large ({args.large_images} images, {args.large_dets} detections an image)",
                                    large, synthetic_detections(large, args.large_dets, args.seed),
                                    max(1, min(args.repeats, 3)))
    print("\nall identical exactly:", all(r.exact for r in results.values()),
          "| all identical to 3 decimals:", all(r.three_decimals for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
