"""Distributed helpers. Every function is a no-op / identity when not running distributed.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything runs in one plain process.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as tdist

logger = logging.getLogger(__name__)


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def get_rank() -> int:
    return tdist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return tdist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> torch.device:
    """Initialise the process group when launched by torchrun and pick this rank's device.

    nccl on GPU, gloo on CPU. ``timeout_s`` bounds every collective, so a rank that dies makes the
    others fail with an error instead of hanging forever.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1 and not is_dist():
        tdist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=dev if use_cuda else None,
        )
        logger.info("distributed: rank %d / %d on %s", get_rank(), get_world_size(), dev)
    return dev


def destroy() -> None:
    if is_dist():
        tdist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        tdist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return value
    value = value.clone()
    tdist.all_reduce(value)
    return value / get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the gradient of its own slice (summed over ranks)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(get_world_size())]
        tdist.all_gather(out, x.contiguous())
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        tdist.all_reduce(grad)
        return grad.chunk(get_world_size(), 0)[get_rank()]


def gather_features(x: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank along dim 0 -> (W*B, ...).

    ``with_grad=False`` is LAVIS's ``concat_all_gather``: the gathered copies carry no gradient,
    *including this rank's own slice* (the original's behaviour). ``with_grad=True`` keeps the
    gradient for every slice. Identity (with gradient) when not distributed.
    """
    if not is_dist():
        return x
    if with_grad:
        return _GatherWithGrad.apply(x)
    with torch.no_grad():
        out = [torch.empty_like(x) for _ in range(get_world_size())]
        tdist.all_gather(out, x.contiguous())
    return torch.cat(out, 0)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` as a list ordered by rank (``[obj]`` when not distributed)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]
