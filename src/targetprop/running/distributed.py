"""Data-parallel training on ``torch.distributed``: launched by ``torchrun
--nproc-per-node N -m targetprop.cli train …`` (or ``targetprop train
--nproc N``, which starts torchrun itself); gloo on CPU, NCCL on CUDA.

* **Data**: every global batch of the epoch's shuffled order (the same order
  in every process: one seed) is cut into one shard per process, rank r
  taking examples r, r + N, r + 2N, … of it. The sequence of global
  batches, and a checkpoint's place in it, do not depend on N, so a run
  resumes with another number of processes, and ``batch_size`` keeps its
  meaning (the global batch).
* **Updates**: after every backward pass the gradients of both weight sets
  are averaged over the processes (one all-reduce of all of them), so every
  process takes the same step and the weights stay identical; for losses
  that are batch means the average is the global batch's gradient (exactly,
  when the shards are of equal size).
* **Noise**: each process draws its own (feedback noise, corruption): rank 0
  the single-process stream, rank r one seeded by (seed, r). A checkpoint
  keeps every process's random state, so a run resumed on as many
  processes draws what it would have drawn.
* **Records**: running scores are summed over processes; rank 0 alone
  writes the run directory and prints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

__all__ = ["Group", "PeerLost", "join", "ShardedBatches"]


class PeerLost(RuntimeError):
    """A collective failed: another process of the run died or hung up."""


def _collective(run, *args) -> None:
    try:
        run(*args)
    except RuntimeError:  # gloo and NCCL raise RuntimeError (DistError where they can tell)
        raise PeerLost("another process of this run is gone (its own message, where it left one, is "
                       "above)") from None


@dataclass(frozen=True)
class Group:
    """This process's place among ``size`` data-parallel processes."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the processes (one
        all-reduce of them all, flattened). Parameters without a gradient are
        left out; which ones have one is the same in every process."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        _collective(dist.all_reduce, flat)
        flat /= self.size
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over the processes (a copy)."""
        values = values.clone()
        _collective(dist.all_reduce, values)
        return values

    def gather(self, values: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """Every process's ``values`` (one shape everywhere), in rank order, on the CPU."""
        values = values.to(device)
        parts = [torch.empty_like(values) for _ in range(self.size)]
        _collective(dist.all_gather, parts, values)
        return [part.cpu() for part in parts]

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set in any process."""
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item())

    def seed_noise(self, seed: int) -> None:
        """Rank r > 0 gets a noise stream of its own (rank 0 keeps the single-process one)."""
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + self.rank)

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def join(device_type: str) -> Group | None:
    """The process group that torchrun's environment describes (WORLD_SIZE,
    RANK and the rendezvous address), or None in a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


class ShardedBatches:
    """A batch sampler's batches cut into shards: this process's part of each
    (examples rank, rank + size, …); as many batches as the sampler's."""

    def __init__(self, batches, group: Group):
        self.batches, self.group = batches, group

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            if len(batch) < self.group.size:  # a last batch too short to go round: repeat it
                batch = batch * -(-self.group.size // len(batch))
            yield batch[self.group.rank::self.group.size]
