# The small detector trained with DeepSpeed ZeRO stage 1 (optimizer states partitioned).
#   tools/dist_train.sh configs/faster_rcnn_r18_small_deepspeed_zero1.py 2
_base_ = ["./faster_rcnn_r18_small.py", "./_base_/strategies/deepspeed_zero1.py"]

optim_wrapper = dict(
    _delete_=True,
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type="AdamW", lr=3e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
