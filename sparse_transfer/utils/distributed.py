"""Leave a distributed run cleanly."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist


@contextmanager
def process_group_released() -> Iterator[None]:
    """Destroy the default process group when the block ends, however it ends.

    A process that exits with the group alive can be aborted by gloo's worker threads during
    interpreter shutdown (SIGABRT, "terminate called without an active exception"), turning a
    finished run into a failed one under `torchrun`/`accelerate launch`.
    """
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
