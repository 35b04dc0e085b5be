"""Training across processes: `torchrun --nproc_per_node N -m robustprompt train ...`.

The engine keeps its one loop; this module gives it what differs when several processes share a run:

- `init(device)`: read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; the
  same for one node or many) and join the process group: backend nccl for CUDA devices (each
  process takes cuda:LOCAL_RANK), gloo on CPU. Without torchrun (or WORLD_SIZE=1) it returns the
  single-process context and nothing changes. A group the caller initialised is used as it is.
- `Dist.wrap(method)`: DistributedDataParallel over the *learnable* parameters only. The frozen
  backbone is in every process already (each loads it); DDP neither broadcasts nor reduces it.
- `Dist.loader(dataset, batch_size, order_seed)`: the global batch `train.batch_size` is split
  evenly across processes (it must be divisible by the world size). A DistributedSampler seeded
  with the engine's per-epoch order seed deals out the *single-process* permutation: global batch
  k is exactly the single-process batch k, its images spread over the processes. (The sampler is
  made per epoch, like the loader, so its seed already is the epoch's; no set_epoch needed.)
- `Dist.shard(items)` / `Dist.sum(...)`: evaluation on 1/N of the test images per process, counts
  summed with all_reduce.
- `Dist.on_main(fn)`: run fn (checks, writes) on rank 0 only; if it fails every process stops.
- `SilentRun`: the run directory as ranks > 0 see it: readable, never written.

Gradient averaging (DDP's mean over processes of per-process mean losses) equals the single-process
gradient of the global mean when the processes hold equal shares of each batch, which holds when the
training set size is divisible by the world size; otherwise the sampler repeats up to N-1 images in
the last batch of each epoch (torch's DistributedSampler padding).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.distributed as td
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import ConfigError, RobustPromptError
from .rundir import RunDir
from .seeding import derive_seed, generator


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank, world size, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this module initialised the process group (and will destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- data
    def local_batch_size(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise ConfigError(f"train.batch_size {global_batch} is the global batch and must be divisible by "
                              f"the number of processes ({self.world_size})")
        return global_batch // self.world_size

    def loader(self, dataset, batch_size: int, order_seed: int, num_workers: int = 0) -> DataLoader:
        """This process's share of each global batch of `batch_size`, in the order `order_seed` draws.

        The global order is `randperm(len(dataset))` from a generator seeded `order_seed` (a
        DistributedSampler at epoch 0 draws exactly that), dealt out rank::world_size; one process
        (world size 1) takes it whole. So global batch k holds the same images for any world size.
        """
        sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=order_seed, drop_last=False)
        # the loader's own generator only seeds its workers (their augmentation randomness)
        return DataLoader(dataset, batch_size=self.local_batch_size(batch_size), sampler=sampler,
                          num_workers=num_workers, drop_last=False,
                          generator=generator(self.rank_seed(derive_seed(order_seed, "workers"))))

    def rank_seed(self, seed: int) -> int:
        """`seed` in one process; a different seed per rank when several (augmentation and random starts
        must not repeat across the processes' images)."""
        return seed if not self.enabled else derive_seed(seed, "rank", self.rank)

    def shard(self, items: Sequence) -> list:
        """Every world_size-th item from this rank's: the processes' shards partition `items`."""
        return list(items)[self.rank :: self.world_size]

    # ---- collectives (no-ops in a single process)
    def sum(self, *values: float) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        td.all_reduce(t, op=td.ReduceOp.SUM)
        return t.tolist()

    def all_gather_rows(self, local: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Concatenate every rank's rows in rank order; rank r holds counts[r] rows (sizes may differ)."""
        if not self.enabled:
            return local
        width = max(counts)
        padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=self.device)
        padded[: local.shape[0]] = local.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        td.all_gather(parts, padded)
        return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(local.device)

    def gather_objects(self, obj) -> list:
        """Every rank's `obj` (small, JSON-like summaries), in rank order."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], object]) -> None:
        """Run `fn` on rank 0 only; if it raises, rank 0 raises that error and every other rank stops too."""
        error = None
        if self.is_main:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = e
        if self.enabled:
            flag = torch.tensor([0 if error is None else 1], device=self.device)
            td.broadcast(flag, src=0)
            if flag.item() and not self.is_main:
                raise RobustPromptError(f"rank {self.rank}: stopped because rank 0 failed (see its message)")
        if error is not None:
            raise error

    # ---- model
    def wrap(self, method: nn.Module) -> Callable:
        """A step runner: `runner(fn, *args)` computes `fn(*args)` (the step's loss) so that its backward
        pass averages the learnable parameters' gradients over the processes (DDP); in a single process
        it is just `fn(*args)`."""
        if not self.enabled:
            return lambda fn, *args: fn(*args)
        return ddp(method, self)


class _Step(nn.Module):
    """Holds the method so that DDP sees its parameters; forward runs whatever loss function it is given."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, fn, *args):
        return fn(*args)


def ddp(method: nn.Module, dist: Dist) -> nn.parallel.DistributedDataParallel:
    """DistributedDataParallel over the learnable parameters of `method` (those with requires_grad outside
    `method.backbone`): the frozen backbone and all buffers are left out of DDP's broadcast and reduction."""
    step = _Step(method)
    frozen = [n for n, _ in step.named_parameters() if n.startswith("method.backbone.")]
    frozen += [n for n, _ in step.named_buffers()]  # buffers are fixed by seeded init; none learns
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step, frozen)
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    # With every buffer ignored there is nothing to broadcast per step. find_unused_parameters=False: every
    # learnable parameter gets a gradient each step (tests/test_methods_common.py), so no graph search.
    return nn.parallel.DistributedDataParallel(step, device_ids=device_ids, find_unused_parameters=False)


def main_process() -> bool:
    """Whether this process is rank 0 (or the only one): the one that prints and writes."""
    if td.is_available() and td.is_initialized():
        return td.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def backend_for(device: torch.device) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init(device: str | torch.device = "cpu") -> Dist:
    """The process context: from an initialised process group, from torchrun's environment, or single."""
    device = torch.device(device)
    if td.is_available() and td.is_initialized():
        return _context(device, owns_group=False)
    if env_world_size() <= 1:
        return Dist(device=device)
    if not td.is_available():
        raise RobustPromptError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RobustPromptError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with torchrun")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    td.init_process_group(backend=backend_for(device))
    return _context(device, owns_group=True)


def _context(device: torch.device, owns_group: bool) -> Dist:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    return Dist(rank=td.get_rank(), world_size=td.get_world_size(), local_rank=local, device=device,
                owns_group=owns_group)


def shutdown(dist: Dist) -> None:
    """Leave the process group if `init` created it."""
    if dist.owns_group and td.is_initialized():
        td.destroy_process_group()


class SilentRun(RunDir):
    """A run directory as a rank > 0 sees it: it reads what rank 0 wrote, and writes nothing."""

    @contextlib.contextmanager
    def lock(self):
        yield self

    def write_config(self, config: dict) -> None:
        pass

    def save_prompt(self, tensors, metadata) -> None:
        pass

    def write_results(self, results: dict) -> None:
        pass

    def log(self, line: str) -> None:
        pass
