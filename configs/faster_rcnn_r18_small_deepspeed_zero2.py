# The small detector (faster_rcnn_r18_small.py) trained with DeepSpeed ZeRO stage 2.
#   tools/dist_train.sh configs/faster_rcnn_r18_small_deepspeed_zero2.py 2     # 2 processes, CPU or GPU
# The optimizer type comes from visdet's registry; DeepSpeed's engine does backward and step.
_base_ = ["./faster_rcnn_r18_small.py", "./_base_/strategies/deepspeed_zero2.py"]

optim_wrapper = dict(
    _delete_=True,
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type="AdamW", lr=3e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
