# The small detector trained with PyTorch FSDP (parameters, gradients and optimizer states
# sharded across processes); on CPU it runs with the gloo backend.
#   tools/dist_train.sh configs/faster_rcnn_r18_small_fsdp.py 2
# optim_wrapper is the small config's (visdet's OptimWrapper with AdamW, clip_grad, paramwise_cfg).
_base_ = ["./faster_rcnn_r18_small.py", "./_base_/strategies/fsdp.py"]
