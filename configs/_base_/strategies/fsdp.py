# PyTorch FullyShardedDataParallel through mmengine's FlexibleRunner and FSDPStrategy.
# use_orig_params=True keeps every parameter's name (paramwise_cfg and schedulers see the
# model's own names); visdet builds the optimizer on the unwrapped model, so rules that look at
# a parameter's shape (flat_decay_mult) see the real shapes, not FSDP's flat shards, then
# mmengine re-creates it on the sharded parameters. state_dict_cfg="full": rank 0 writes one
# ordinary checkpoint (plain tensors, weights_only-loadable, usable by tools/test.py).
runner_type = "FlexibleRunner"
strategy = dict(
    type="FSDPStrategy",
    model_wrapper=dict(type="MMFullyShardedDataParallel", use_orig_params=True),
    state_dict_cfg="full",
)
