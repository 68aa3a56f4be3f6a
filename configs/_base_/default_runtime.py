# Runtime defaults shared by every visdet config (MMDetection's layout).
# default_scope='visdet' makes mmengine's builders look in visdet's registries
# first (importing visdet.registry by itself), then in mmengine's.
default_scope = "visdet"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# curves.png (loss and mAP) in the work dir at the end; peak memory in the log on CPU;
# checkpoints that torch.load(weights_only=True) reads with no allowlist; RNG states in them
# so that --resume continues exactly (with visdet's loops); schedule-free optimizers in eval
# mode for validation and checkpoints (a no-op for every other optimizer); ZeroRedundancyOptimizer
# shards gathered on every rank before a save, so mmengine's own Runner saves them too (a no-op without ZeRO).
custom_hooks = [dict(type="CurvePlotHook"), dict(type="MemoryLogHook"), dict(type="PlainCheckpointHook"),
                dict(type="RNGStateHook"), dict(type="ScheduleFreeHook"), dict(type="ZeroConsolidateHook")]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

# Scalars go to <work_dir>/<timestamp>/vis_data/scalars.json; tools/train.py adds
# TensorBoard when it is installed.
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer")

log_processor = dict(type="LogProcessor", window_size=50, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
