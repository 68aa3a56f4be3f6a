"""The embedded default data set: synthetic shapes in COCO format, generated on first use.

visdet's main command must train and evaluate a detector on a fresh machine
with nothing downloaded, so the data is drawn here, deterministically from a
seed: several shape classes of varied size, colour, aspect and rotation, with
partial overlap and occlusion, on textured backgrounds with distractor strokes.
Colour carries no class information and sizes span small to large objects, so
a detector must learn shape and extent; a constant prediction scores ~0 mAP.

The result is an ordinary COCO-format folder (``annotations/instances_{split}.json``
and ``{split}/*.jpg``), read by the same ``CocoDataset`` as real COCO. A
``manifest.json`` records the generator parameters; a folder whose manifest
differs (or is missing) is regenerated. Generation writes into a temporary
sibling folder and renames it, so an interrupted run never leaves a half set.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

GENERATOR_VERSION = 1
CLASSES = ("rectangle", "ellipse", "triangle", "cross")


@dataclass(frozen=True)
class EmbeddedDataSpec:
    """Everything that determines the generated files (recorded in the manifest)."""

    num_train: int = 600
    num_val: int = 100
    image_size: tuple[int, int] = (256, 256)  # (width, height)
    min_objects: int = 1
    max_objects: int = 5
    min_object_size: int = 20
    max_object_size: int = 120
    max_occlusion: float = 0.3  # at most this fraction of an earlier box may be covered by a later one
    seed: int = 0
    jpeg_quality: int = 95
    classes: tuple[str, ...] = field(default=CLASSES)

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> "EmbeddedDataSpec":
        """Build from a config dict, naming unknown keys (``embedded_data.<key>``) in the error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known - {"root"})
        if unknown:
            raise ValueError(
                f"embedded_data: unknown key(s) {unknown}; valid keys are root, {', '.join(sorted(known))}")
        values = {k: v for k, v in cfg.items() if k in known}
        for key in ("image_size", "classes"):
            if key in values:
                values[key] = tuple(values[key])
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise a ValueError naming the key for values that cannot produce a usable set."""
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError("embedded_data.num_train/num_val: must be at least 1")
        width, height = self.image_size
        if min(width, height) < 32:
            raise ValueError(f"embedded_data.image_size: {self.image_size} is too small; use at least (32, 32)")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("embedded_data.min_objects/max_objects: need 1 <= min_objects <= max_objects")
        if not 4 <= self.min_object_size <= self.max_object_size <= min(width, height):
            raise ValueError(
                "embedded_data.min_object_size/max_object_size: need 4 <= min <= max <= the image's shorter side")
        unknown = sorted(set(self.classes) - set(CLASSES))
        if unknown or not self.classes:
            raise ValueError(f"embedded_data.classes: {unknown or 'empty'}; choose from {list(CLASSES)}")

    def manifest(self) -> dict[str, Any]:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured BGR background: low-frequency colour noise, fine grain and a few distractor strokes."""
    coarse = rng.uniform(40, 215, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, rng.uniform(4, 14), size=image.shape).astype(np.float32)
    for _ in range(rng.integers(2, 7)):  # strokes: edges that are not objects
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    return image


def _contrasting_colour(rng: np.random.Generator, patch: np.ndarray) -> tuple[float, float, float]:
    """A random colour at least 60 (L2 over BGR) from the patch's mean, so every object is visible."""
    mean = patch.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - mean) >= 60:
            break
    return tuple(float(c) for c in colour)


def _shape_points(kind: str, w: float, h: float, rng: np.random.Generator) -> np.ndarray:
    """Polygon vertices (centred on 0) whose axis-aligned extent is exactly ``w`` x ``h``."""
    if kind == "rectangle":
        pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    elif kind == "triangle":
        apex = rng.uniform(0.0, 1.0)
        pts = np.array([[apex, 0], [1, 1], [0, 1]], np.float64)
        if rng.random() < 0.5:  # pointing down
            pts[:, 1] = 1 - pts[:, 1]
    elif kind == "cross":
        t = rng.uniform(0.25, 0.4)  # arm thickness as a fraction of the extent
        a, b = 0.5 - t / 2, 0.5 + t / 2
        pts = np.array([[a, 0], [b, 0], [b, a], [1, a], [1, b], [b, b], [b, 1], [a, 1], [a, b], [0, b],
                        [0, a], [a, a]], np.float64)
    elif kind == "ellipse":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([0.5 + 0.5 * np.cos(angles), 0.5 + 0.5 * np.sin(angles)], axis=1)
    else:  # pragma: no cover - guarded by EmbeddedDataSpec.validate
        raise ValueError(kind)
    return (pts - 0.5) * np.array([w, h])


def _draw_image(rng: np.random.Generator, spec: EmbeddedDataSpec) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image and its objects (class index and xyxy box of the drawn pixels)."""
    width, height = spec.image_size
    image = _background(rng, width, height)
    objects: list[dict[str, Any]] = []
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(wanted * 20):  # rejection sampling for placement
        if len(objects) == wanted:
            break
        label = int(rng.integers(len(spec.classes)))
        size = float(np.exp(rng.uniform(np.log(spec.min_object_size), np.log(spec.max_object_size))))
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
        if w > width - 2 or h > height - 2:
            continue
        angle = rng.uniform(-0.35, 0.35)
        pts = _shape_points(spec.classes[label], w, h, rng)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = pts @ rot.T
        cx = rng.uniform(-pts[:, 0].min() + 1, width - 1 - pts[:, 0].max()) if np.ptp(pts[:, 0]) < width - 2 else None
        cy = rng.uniform(-pts[:, 1].min() + 1, height - 1 - pts[:, 1].max()) if np.ptp(pts[:, 1]) < height - 2 else None
        if cx is None or cy is None:
            continue
        pts = pts + np.array([cx, cy])
        box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        if not _placement_ok(box, [o["bbox"] for o in objects], spec.max_occlusion):
            continue
        x1, y1, x2, y2 = (int(v) for v in np.round(box))
        colour = _contrasting_colour(rng, image[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1])
        cv2.fillPoly(image, [np.round(pts * 16).astype(np.int32)], colour, lineType=cv2.LINE_AA, shift=4)
        objects.append({"label": label, "bbox": box})
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, objects


def _placement_ok(box: np.ndarray, earlier: list[np.ndarray], max_occlusion: float) -> bool:
    """A new (front) box may cover at most ``max_occlusion`` of any earlier box and not swallow it."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in earlier:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter / other_area > max_occlusion or inter / area > max_occlusion:
            return False
    return True


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator, spec: EmbeddedDataSpec) -> None:
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    width, height = spec.image_size
    for index in range(count):
        image, objects = _draw_image(rng, spec)
        file_name = f"{index:06d}.jpg"
        if not cv2.imwrite(str(root / split / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]):
            raise OSError(f"could not write {root / split / file_name}")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            x1, y1, x2, y2 = (float(v) for v in obj["bbox"])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["label"] + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(spec.classes)]
    coco = {"images": images, "annotations": annotations, "categories": categories,
            "info": {"description": f"visdet embedded shapes ({split})", "version": str(GENERATOR_VERSION)}}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def is_current(root: str | Path, spec: EmbeddedDataSpec) -> bool:
    """Whether ``root`` holds a complete set generated with exactly ``spec``."""
    manifest = Path(root) / "manifest.json"
    try:
        return json.loads(manifest.read_text()) == json.loads(json.dumps(spec.manifest()))
    except (OSError, ValueError):
        return False


def generate(root: str | Path, spec: EmbeddedDataSpec | None = None) -> Path:
    """Write the train and val splits under ``root`` (replacing an outdated set); return ``root``."""
    from visdet.engine.checkpoint.atomic import current_umask

    spec = spec or EmbeddedDataSpec()
    spec.validate()
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        # mkdtemp makes 0o700 whatever the umask; the data set folder gets what mkdir would give it.
        staging.chmod(0o777 & ~current_umask())
        # Separate streams per split, so changing num_train leaves the val images unchanged.
        train_rng, val_rng = (np.random.default_rng([spec.seed, i]) for i in (0, 1))
        _write_split(staging, "train", spec.num_train, train_rng, spec)
        _write_split(staging, "val", spec.num_val, val_rng, spec)
        (staging / "manifest.json").write_text(json.dumps(spec.manifest(), indent=2))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root


def ensure(root: str | Path, spec: EmbeddedDataSpec | None = None) -> bool:
    """Generate the set under ``root`` unless it is already current; return True if it was generated."""
    spec = spec or EmbeddedDataSpec()
    if is_current(root, spec):
        return False
    generate(root, spec)
    return True
