# The small Faster R-CNN (ResNet-18, narrow FPN and box head) on the main job's embedded data set
# (600 train / 100 val images of 160x160): a run long enough for mAP to separate optimizers
# (AdamW at lr 1e-3 reached bbox mAP 0.11 after its 600 iterations on a 2-core CPU, at ~0.2 s per
# iteration) and short enough to repeat: what tools/compare_optimizers.py, tools/lr_find.py and
# tools/tune.py are shown with in docs/choosing_an_optimizer.md and benchmarks/tune_vs_grid.py.
# The small config's own 16 images are for tests: every optimizer scores mAP 0 on them.
_base_ = "./faster_rcnn_r18_small.py"

data_root = "data/embedded_shapes/"  # the main job's copy: same spec, so nothing is regenerated
image_size = (160, 160)
embedded_data = dict(root=data_root, num_train=600, num_val=100, image_size=image_size, min_object_size=20,
                     max_object_size=120, max_objects=5)

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
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val.json")
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3))
max_epochs = 2
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=50))
log_processor = dict(window_size=50)
