# DeepSpeed ZeRO stage 2 (optimizer states and gradients partitioned across processes) through
# mmengine's FlexibleRunner; use with optim_wrapper=dict(type="DeepSpeedOptimWrapper", ...).
# See deepspeed_zero1.py and docs/distributed.md.
runner_type = "FlexibleRunner"
strategy = dict(
    type="DeepSpeedStrategy",
    zero_optimization=dict(stage=2, contiguous_gradients=True, overlap_comm=False,
                           reduce_scatter=True, allgather_partitions=True),
    gradient_clipping=10.0,
)
