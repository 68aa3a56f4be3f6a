# The small detector trained with DeepSpeed ZeRO stage 2 and the optimizer offloaded to the CPU
# (ZeRO-Offload), which runs the step with DeepSpeedCPUAdam (compiled on first use, ~45 s).
#   tools/dist_train.sh configs/faster_rcnn_r18_small_deepspeed_zero2_offload.py 2
_base_ = ["./faster_rcnn_r18_small.py", "./_base_/strategies/deepspeed_zero2_offload.py"]

optim_wrapper = dict(
    _delete_=True,
    type="DeepSpeedOptimWrapper",
    optimizer=dict(type="DeepSpeedCPUAdam", lr=3e-4, weight_decay=0.05, adamw_mode=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
