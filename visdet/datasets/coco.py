"""``CocoDataset``: COCO-format detection annotations as mmengine data infos.

mmengine's ``BaseDataset`` already does path joining, lazy init, filtering
hooks, subsetting and serialisation; pycocotools' ``COCO`` does the index
(image -> annotations). What is written here is what neither does: turning
COCO records into MMDetection's ``data_info`` dicts (xywh -> xyxy, crowd ->
ignore, class subset/rename by name) and checking the config *before*
training, so a wrong ``data_root``/``ann_file``/``data_prefix``/``classes``
fails at build time with the config key in the message instead of as a
``KeyError`` deep inside a dataloader worker.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import numbers
import os.path as osp
from collections.abc import Iterable, Sequence
from typing import Any

from mmengine import fileio
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from visdet.datasets.errors import DatasetConfigError
from visdet.datasets.transforms.loading import ImageLoadError
from visdet.registry import DATASETS, TRANSFORMS

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')

# Keys every record of a COCO detection file must have (pycocotools itself
# checks none of them and fails later with a bare KeyError).
_REQUIRED = {
    'images': ('id', 'file_name', 'height', 'width'),
    'annotations': ('id', 'image_id', 'category_id', 'bbox'),
    'categories': ('id', 'name'),
}


# Why an annotation of the file is not used, as the build-time summary words it
# ("<file>: dropped 3 annotations <reason>"). Annotations left out on purpose
# (a category outside metainfo.classes, ``ignore``) are not listed.
DROP_REASONS = {
    'unknown_image': "whose image_id is not in 'images'",
    'unknown_category': "whose category_id is not in 'categories'",
    'non_numeric': 'with non-numeric coordinates',
    'non_finite': 'with non-finite coordinates (NaN or infinity)',
    'non_positive': 'with zero or negative width/height',
    'sub_pixel': 'narrower or shorter than 1 pixel',
    'zero_area': "with an 'area' that is not positive",
    'outside': 'lying entirely outside their image',
}


def box_problem(ann: dict, width: float, height: float) -> str | None:
    """The ``DROP_REASONS`` key of a COCO box that cannot be trained on, or None for a usable one.

    Non-finite coordinates are dropped, never clamped: an infinite height is a
    broken record, not a box reaching the image edge.
    """
    try:
        x1, y1, w, h = (float(v) for v in ann['bbox'])
    except (TypeError, ValueError):
        return 'non_numeric'
    if not all(math.isfinite(v) for v in (x1, y1, w, h)):
        return 'non_finite'
    if w <= 0 or h <= 0:
        return 'non_positive'
    if w < 1 or h < 1:
        return 'sub_pixel'
    try:
        area = float(ann.get('area', w * h))
    except (TypeError, ValueError):
        area = math.nan
    if not area > 0:  # also NaN
        return 'zero_area'
    inter_w = min(x1 + w, width) - max(x1, 0.0)
    inter_h = min(y1 + h, height) - max(y1, 0.0)
    if inter_w <= 0 or inter_h <= 0:
        return 'outside'
    return None


def drop_summary(ann_file: str, dropped: dict[str, list[Any]], total: int) -> list[str]:
    """One line per reason: ``<file>: dropped 3 of 120 annotations with ... (ids 4, 7, 9)``."""
    lines = []
    for reason, ids in dropped.items():
        shown_ids = ', '.join(str(i) for i in ids[:5]) + (', ...' if len(ids) > 5 else '')
        lines.append(f'{_shown(ann_file)}: dropped {len(ids)} of {total} annotations '
                     f'{DROP_REASONS[reason]} (ids {shown_ids})')
    return lines


def _shown(path: str) -> str:
    """``path`` as the user should see it: absolute for local files, as-is for URLs."""
    return path if '://' in path else osp.abspath(path)


def quiet_coco(dataset: dict) -> COCO:
    """A pycocotools ``COCO`` index over an already loaded ``dataset`` dict.

    pycocotools prints progress ('creating index...') on stdout; importing or
    using visdet must print nothing, so that text goes to the log at DEBUG.
    """
    coco = COCO()
    coco.dataset = dataset
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco.createIndex()
    if buf.getvalue().strip():
        print_log(buf.getvalue().strip(), logger='current', level=logging.DEBUG)
    return coco


def check_coco_format(data: Any, ann_file: str, key: str) -> None:
    """Raise ``DatasetConfigError(key)`` unless ``data`` looks like a COCO detection file."""
    if not isinstance(data, dict):
        raise DatasetConfigError(
            f"{_shown(ann_file)} is not a COCO annotation file: its top level is a "
            f"{type(data).__name__}, expected a JSON object with 'images', 'annotations' and 'categories'.", key=key)
    for section, fields in _REQUIRED.items():
        records = data.get(section)
        if not isinstance(records, list):
            raise DatasetConfigError(
                f"{_shown(ann_file)} is not a COCO annotation file: it has no '{section}' list "
                f"(top-level keys: {sorted(data)}); expected 'images', 'annotations' and 'categories' lists.", key=key)
        for i, record in enumerate(records):
            missing = [f for f in fields if not isinstance(record, dict) or f not in record]
            if missing:
                raise DatasetConfigError(
                    f"{_shown(ann_file)}: {section}[{i}] lacks {missing}; every COCO {section} "
                    f"entry needs {list(fields)}.", key=key)
            if section == 'annotations' and (not isinstance(record['bbox'], (list, tuple))
                                             or len(record['bbox']) != 4):
                raise DatasetConfigError(
                    f"{_shown(ann_file)}: annotations[{i}]['bbox'] is {record['bbox']!r}; "
                    'expected [x, y, width, height].', key=key)


def load_coco_json(ann_file: str, key: str, backend_args: dict | None = None) -> dict:
    """Read and check a COCO json, with errors naming ``key`` and the resolved path."""
    if not ann_file:
        raise DatasetConfigError('is empty; set it to the path of a COCO-format annotation json.', key=key)
    if not fileio.exists(ann_file, backend_args=backend_args):
        raise DatasetConfigError(
            f"annotation file {_shown(ann_file)} does not exist; check `{key}` "
            '(relative paths are joined to data_root).', key=key)
    try:
        text = fileio.get_text(ann_file, backend_args=backend_args)
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetConfigError(f'{_shown(ann_file)} is not valid JSON ({err}); '
                                      'expected a COCO annotation json.', key=key) from err
    check_coco_format(data, ann_file, key)
    return data


def class_cat_ids(classes: Sequence[str], categories: list[dict], where: str, key: str) -> list[int]:
    """COCO category id of every name in ``classes``, in ``classes`` order.

    Looked up by name (first match) so ``metainfo=dict(classes=...)`` can pick
    a subset of the file's categories in any order; label ``i`` is then
    ``classes[i]``. Unknown names are an error: silently dropping them (as
    mmdet does) shifts every later label.
    """
    name2id: dict[str, int] = {}
    for cat in categories:
        name2id.setdefault(cat['name'], cat['id'])
    missing = [name for name in classes if name not in name2id]
    if missing:
        raise DatasetConfigError(
            f'class names {missing} are not categories of {where}; '
            f'the file defines {list(name2id)}. Set `{key}` to names from that list.', key=key)
    return [name2id[name] for name in classes]


def check_image_headers(paths: Iterable[str]) -> None:
    """Raise ImageLoadError naming the first local image that is missing or has no readable image header.

    Runs when the dataset is built, so a bad file stops the run before the first
    iteration rather than hours in. Only the header is read (PIL opens lazily;
    ~0.1 ms an image, seconds for all of COCO); a file whose header is fine but
    whose body is truncated is still caught, and named, when it is decoded.
    """
    for path in paths:
        if '://' in path:
            continue
        try:
            with Image.open(path):
                pass
        except FileNotFoundError:
            raise ImageLoadError(f'image file {_shown(path)} does not exist (check the dataset\'s '
                                 "data_prefix.img and the file_name in the annotation file)") from None
        except (UnidentifiedImageError, OSError) as err:
            raise ImageLoadError(f'image file {_shown(path)} is not a readable image ({err}); replace or '
                                 'remove it (set check_images=False in the dataset config to skip this '
                                 'check)') from None


@DATASETS.register_module()
class CocoDataset(BaseDataset):
    """COCO detection dataset (boxes only), MMDetection's config keys and data infos.

    Each data info is ``dict(img_path, img_id, height, width, instances=[dict(
    bbox=[x1, y1, x2, y2], bbox_label, ignore_flag)])``; ``bbox_label`` indexes
    ``metainfo['classes']`` (default: COCO's 80 names).

    ``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` drops (outside
    ``test_mode``) images without any non-crowd box and images whose shorter
    side is below ``min_size``. mmdet keeps images whose only boxes are crowd
    or invalid; they carry no training signal, so they are dropped here. A
    ``filter_cfg`` that leaves no image is a ``DatasetConfigError`` naming the
    filter and what each removes.

    Annotations that cannot be used (non-finite or non-numeric coordinates,
    zero or negative size, under a pixel, outside the image, a category or
    image the file does not define) are dropped, and each reason is logged
    once at build as one WARNING line with its count (``DROP_REASONS``).

    ``check_images=True`` opens the header of every listed local image when the
    dataset is built, so a missing or unreadable file is named before training.
    """

    METAINFO = {'classes': COCO_CLASSES}

    def __init__(self, *args: Any, data_prefix: dict | None = None,
                 pipeline: Sequence[dict | Any] = (), backend_args: dict | None = None,
                 check_images: bool = True, **kwargs: Any) -> None:
        self.backend_args = backend_args
        self.check_images = check_images
        # Build dict transforms with visdet's registry so a dataset made outside
        # a Runner (no default scope) still finds visdet's transforms.
        built = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(*args, data_prefix=dict(img='') if data_prefix is None else data_prefix,
                         pipeline=built, **kwargs)

    # ----------------------------------------------------------------- loading
    def _check_paths(self) -> None:
        """data_root, then ann_file, then the image folder: the first that is missing is named."""
        if self.data_root and not fileio.exists(self.data_root, backend_args=self.backend_args):
            raise DatasetConfigError(
                f'folder {_shown(self.data_root)} does not exist; set `dataset.data_root` '
                'to the folder holding the annotation file and images.', key='dataset.data_root')
        if 'img' not in self.data_prefix:
            raise DatasetConfigError(
                f"has no 'img' key ({self.data_prefix}); use "
                "data_prefix=dict(img='<image folder relative to data_root>/').", key='dataset.data_prefix')
        img_dir = self.data_prefix['img']
        if img_dir and '://' not in img_dir and not osp.isdir(img_dir):
            raise DatasetConfigError(
                f'image folder {_shown(img_dir)} does not exist; set `dataset.data_prefix.img` to the '
                'folder of the images (relative to data_root).', key='dataset.data_prefix.img')

    def _classes(self) -> tuple[str, ...]:
        classes = self._metainfo.get('classes')
        if (isinstance(classes, str) or not isinstance(classes, Sequence) or not classes
                or not all(isinstance(c, str) for c in classes)):
            raise DatasetConfigError(
                f'is {classes!r}; expected a non-empty tuple of class-name strings '
                "such as ('cat', 'dog').", key='dataset.metainfo.classes')
        return tuple(classes)

    def load_data_list(self) -> list[dict]:
        """Check the config, read the COCO json and parse every image into a data info."""
        self._check_paths()
        classes = self._classes()
        data = load_coco_json(self.ann_file, 'dataset.ann_file', self.backend_args)
        ann_ids = [ann['id'] for ann in data['annotations']]
        if len(set(ann_ids)) != len(ann_ids):
            raise DatasetConfigError(
                f'{_shown(self.ann_file)} repeats annotation ids; COCO annotation ids '
                'must be unique (pycocotools would silently keep only one of each).', key='dataset.ann_file')
        key = 'dataset.metainfo.classes'
        try:
            self.cat_ids = class_cat_ids(classes, data['categories'], _shown(self.ann_file), key)
        except DatasetConfigError as err:
            if 'classes' in type(self).METAINFO and classes == tuple(type(self).METAINFO['classes']):
                raise DatasetConfigError(
                    f'{err.reason} (the default is COCO\'s 80 class names; for another label set pass '
                    "metainfo=dict(classes=(...)) to the dataset).", key=key) from None
            raise
        self.cat2label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}

        if not data['images']:
            raise DatasetConfigError(
                f"{_shown(self.ann_file)} lists no images ('images' is empty); point `dataset.ann_file` "
                'at an annotation file with images.', key='dataset.ann_file')
        img_ids = {img['id'] for img in data['images']}
        self._all_cat_ids = {cat['id'] for cat in data['categories']}
        # pycocotools indexes annotations by image, so one whose image is not listed is never
        # seen: count it here. parse_data_info adds the boxes it drops.
        self._dropped: dict[str, list[Any]] = {}
        for ann in data['annotations']:
            if ann['image_id'] not in img_ids:
                self._dropped.setdefault('unknown_image', []).append(ann['id'])

        coco = quiet_coco(data)
        data_list = []
        for img_id in coco.getImgIds():
            raw_img_info = dict(coco.loadImgs([img_id])[0], img_id=img_id)
            raw_ann_info = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            data_list.append(self.parse_data_info(dict(raw_img_info=raw_img_info, raw_ann_info=raw_ann_info)))
        if data_list and '://' not in data_list[0]['img_path'] and not osp.isfile(data_list[0]['img_path']):
            raise DatasetConfigError(
                f"image {_shown(data_list[0]['img_path'])} (the first listed in "
                f'{_shown(self.ann_file)}) does not exist; `dataset.data_prefix.img` must be the folder that '
                "holds the images named by 'file_name'.", key='dataset.data_prefix.img')
        if self.check_images:
            check_image_headers(info['img_path'] for info in data_list)
        for line in drop_summary(self.ann_file, self._dropped, len(data['annotations'])):
            print_log(line, logger='current', level=logging.WARNING)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One COCO image record and its annotations -> mmdet data info (boxes as xyxy)."""
        img_info = raw_data_info['raw_img_info']
        width, height = img_info['width'], img_info['height']
        all_cat_ids = getattr(self, '_all_cat_ids', None)  # None: called outside load_data_list
        dropped = getattr(self, '_dropped', {})
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if all_cat_ids is not None and ann['category_id'] not in all_cat_ids:
                dropped.setdefault('unknown_category', []).append(ann['id'])
                continue
            if ann.get('ignore', False) or ann['category_id'] not in self.cat2label:
                continue  # left out on purpose: not counted
            problem = box_problem(ann, width, height)
            if problem is not None:
                dropped.setdefault(problem, []).append(ann['id'])
                continue
            x1, y1, w, h = (float(v) for v in ann['bbox'])
            instances.append(dict(bbox=[x1, y1, x1 + w, y1 + h],
                                  bbox_label=self.cat2label[ann['category_id']],
                                  ignore_flag=1 if ann.get('iscrowd', 0) else 0))
        return dict(img_path=osp.join(self.data_prefix['img'], img_info['file_name']),
                    img_id=img_info['img_id'], height=height, width=width, instances=instances)

    def filter_data(self) -> list[dict]:
        """Drop images without a usable box and too-small images (never in ``test_mode``).

        Raises:
            DatasetConfigError: nothing is left (mmengine would fail later with
                "need at least one array to concatenate"); the message names the
                filter, its value, and what each filter removes on its own.
        """
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt, min_size = self._filter_settings()
        empty = [filter_empty_gt and not any(inst['ignore_flag'] == 0 for inst in info['instances'])
                 for info in self.data_list]
        small = [min(info['width'], info['height']) < min_size for info in self.data_list]
        kept = [info for info, e, s in zip(self.data_list, empty, small) if not (e or s)]
        if not kept:
            raise self._filtered_out_error(filter_empty_gt, min_size, empty, small)
        return kept

    def _filter_settings(self) -> tuple[bool, float]:
        """``filter_cfg``'s two settings, checked: a misspelt key would otherwise filter nothing."""
        allowed = ('filter_empty_gt', 'min_size')
        if not hasattr(self.filter_cfg, 'keys'):
            raise DatasetConfigError(f'is {self.filter_cfg!r}; expected a dict such as '
                                     'dict(filter_empty_gt=True, min_size=32).', key='dataset.filter_cfg')
        unknown = sorted(str(k) for k in self.filter_cfg if k not in allowed)
        if unknown:
            raise DatasetConfigError(
                f'has unknown keys {unknown}; CocoDataset filters with {list(allowed)} '
                '(e.g. filter_cfg=dict(filter_empty_gt=True, min_size=32)).', key='dataset.filter_cfg')
        min_size = self.filter_cfg.get('min_size', 0)
        if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or not 0 <= min_size < math.inf:
            raise DatasetConfigError(
                f'is {min_size!r}; expected a number of pixels >= 0 (images whose shorter side is below it '
                'are dropped; 0 keeps every size).', key='dataset.filter_cfg.min_size')
        return bool(self.filter_cfg.get('filter_empty_gt', False)), min_size

    def _filtered_out_error(self, filter_empty_gt: bool, min_size: float, empty: list[bool],
                            small: list[bool]) -> DatasetConfigError:
        """The error for a filter_cfg that leaves no image: which filter, its counts, and what would work."""
        total, n_empty, n_small = len(self.data_list), sum(empty), sum(small)
        empty_text = (f'filter_empty_gt=True removes {n_empty} (no usable non-crowd box)' if filter_empty_gt
                      else 'filter_empty_gt is off')
        small_text = (f'min_size={min_size} removes {n_small} (shorter side below {min_size})' if min_size
                      else 'min_size is off')
        counts = f'{_shown(self.ann_file)} has {total} images; {empty_text}, {small_text}'

        with_boxes = [min(info['width'], info['height']) for info, e in zip(self.data_list, empty) if not e]
        largest = max(with_boxes, default=0)
        if n_small == total and with_boxes:
            return DatasetConfigError(
                f'{min_size} filters out every image: {counts}. The largest image with a usable box has a '
                f'shorter side of {largest}: set min_size to at most {largest} (min_size={largest} keeps '
                f'{sum(side >= largest for side in with_boxes)} of {total}), or to 0 for no size filter.',
                key='dataset.filter_cfg.min_size')
        if n_empty == total:
            dropped = sum(len(ids) for ids in getattr(self, '_dropped', {}).values())
            why = (f'; {dropped} annotations were dropped as invalid (see the warning logged above)'
                   if dropped else '')
            return DatasetConfigError(
                f'True filters out every image: {counts}. No image has a non-crowd box of the classes '
                f'{tuple(self._metainfo["classes"])}{why}. Check that metainfo.classes names categories '
                'of the file that have boxes, or set filter_empty_gt=False.',
                key='dataset.filter_cfg.filter_empty_gt')
        return DatasetConfigError(
            f'{dict(self.filter_cfg)} filters out every image together: {counts}; the images with boxes have '
            f'shorter sides up to {largest}, so a min_size of at most {largest} keeps some.',
            key='dataset.filter_cfg')

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels of the boxes of image ``idx`` (used by class-balanced samplers)."""
        return [inst['bbox_label'] for inst in self.get_data_info(idx)['instances']]
