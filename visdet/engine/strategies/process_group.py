"""The environment a one-process group needs when nothing launched several processes.

DeepSpeed and FSDP always need a torch.distributed group, but ``tools/train.py``
without a launcher sets none of the variables ``env://`` initialisation reads.
"""
from __future__ import annotations

import os
import socket


def set_single_process_env() -> None:
    """Fill RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT for a group of one, keeping any already set."""
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
