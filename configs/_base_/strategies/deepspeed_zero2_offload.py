# DeepSpeed ZeRO stage 2 with the optimizer states and step offloaded to the CPU (ZeRO-Offload).
# DeepSpeed runs the offloaded step with DeepSpeedCPUAdam, so the optimizer must be
# optim_wrapper.optimizer=dict(type="DeepSpeedCPUAdam", ...) (visdet refuses any other at build
# time). Its C++ kernel is compiled on first use (~45 s, cached in ~/.cache/torch_extensions).
runner_type = "FlexibleRunner"
strategy = dict(
    type="DeepSpeedStrategy",
    zero_optimization=dict(stage=2, contiguous_gradients=True, overlap_comm=False,
                           offload_optimizer=dict(device="cpu", pin_memory=False)),
    gradient_clipping=10.0,
)
