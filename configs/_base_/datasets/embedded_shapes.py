# The embedded default data set: synthetic shapes in COCO format (visdet.datasets.embedded).
# tools/train.py and tools/test.py generate it under data_root on first use (a few
# seconds, nothing downloaded) and regenerate it when `embedded_data` changes.
dataset_type = "CocoDataset"
data_root = "data/embedded_shapes/"
classes = ("rectangle", "ellipse", "triangle", "cross")
image_size = (160, 160)  # (width, height): the generated images and the training scale

embedded_data = dict(root=data_root, num_train=600, num_val=100, image_size=image_size, classes=classes, seed=0)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_size, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]

# Decoding a 160x160 JPEG takes about a millisecond: worker processes would only
# take CPU from the model on a small machine.
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file="annotations/instances_train.json",
        data_prefix=dict(img="train/"),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
    ),
)
# Validation in batches of 8: every image is 160x160, so batching adds no padding and the detections
# are the same as one by one (tests/models/detectors/test_batched_inference.py), ~20% faster per image.
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file="annotations/instances_val.json",
        data_prefix=dict(img="val/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/instances_val.json", metric="bbox")
test_evaluator = val_evaluator
