"""Several processes (Lightning DDP): which one this is, and work split over them with Lightning Fabric.

With the ``ddp`` strategy, Lightning starts the further processes of a machine by running the same command line
again (``LOCAL_RANK`` set); each process then runs everything the first one does until they meet in the process
group, so files are written by global rank 0 only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    import lightning.pytorch as pl

Item = TypeVar("Item")


def is_global_zero() -> bool:
    """Whether this process is global rank 0 of a multi-process run, or runs alone; known from the environment
    its launcher gave it, before a Lightning Trainer or Fabric exists.

    torchrun sets ``RANK``; Lightning's launcher numbers a machine's processes by ``LOCAL_RANK`` and machines by
    ``NODE_RANK``; SLURM and LSF jobs have ``SLURM_PROCID`` and ``JSM_NAMESPACE_RANK``. The first of them that is
    set counts, in Lightning's order (``rank_zero_only.rank``, which overlooks ``NODE_RANK``).
    """
    rank = next((int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                 if name in os.environ), 0)
    machine = 0 if "RANK" in os.environ else int(os.environ.get("NODE_RANK", 0))
    return rank == 0 and machine == 0


def quiet_lightning() -> None:
    """Lightning's information messages off (its warnings and errors stay)."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _process_group() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait until every process of the process group is here; nothing when there is none."""
    if _process_group():
        torch.distributed.barrier()


@dataclass(frozen=True)
class Shard:
    """This process's part of work split over ``count`` processes: items ``rank``, ``rank + count``, ...

    ``device``: where this process computes (None: wherever the caller puts things by default).
    """

    rank: int = 0
    count: int = 1
    device: torch.device | None = None

    def indices(self, size: int) -> range:
        """This process's indices of ``size`` items, dealt round-robin."""
        return range(self.rank, size, self.count)

    def share(self, items: list[Item]) -> list[tuple[int, Item]]:
        """(index, item) of this process's items."""
        return [(index, items[index]) for index in self.indices(len(items))]

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` (picklable) in rank order on rank 0, None on the others; all must call it."""
        if self.count == 1:
            return [value]
        gathered = [None] * self.count if self.rank == 0 else None
        torch.distributed.gather_object(value, gathered, dst=0)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (picklable) on every process; all must call it."""
        if self.count == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def process_group_shard() -> Shard:
    """This process's shard of the process group that Lightning set up (a single process without one)."""
    if not _process_group():
        return Shard()
    return Shard(torch.distributed.get_rank(), torch.distributed.get_world_size())


def log_validation_scores(module: pl.LightningModule, crps: torch.Tensor, mse: torch.Tensor, windows: int) -> None:
    """Log a validation batch's CRPS (what the best checkpoint is chosen by) and MSE; their epoch means are taken
    over the windows of all processes, so that every process keeps the same best epoch."""
    # The batch size as a float: Lightning averages the processes' summed batch sizes in the sum's own dtype, and
    # shares of unequal size (5 windows on 2 processes: 3 and 2) would average to an integer 2 instead of 2.5.
    module.log("val/crps", crps, prog_bar=True, batch_size=float(windows), sync_dist=True)
    module.log("val/mse", mse, batch_size=float(windows), sync_dist=True)


def launch(accelerator: str | None = None, devices: int | str | None = None, strategy: str | None = None,
           num_nodes: int | None = None) -> Shard:
    """Start the processes asked for (Lightning's defaults for what is not given) with Lightning Fabric and
    return this one's shard; the further processes of this machine re-run the command line up to here."""
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=accelerator or "auto", devices=devices or "auto", strategy=strategy or "auto",
                    num_nodes=num_nodes or 1)
    fabric.launch()
    return Shard(fabric.global_rank, fabric.world_size, fabric.device)
