"""How many intra-op threads the trainer uses and how many data-loader workers feed it.

Oversubscribed cores make CPU training several times slower: each worker process and each busy
process of someone else competes with the trainer's OpenMP thread team, whose barriers then wait for
a descheduled thread (measured on a busy 2-core machine: torch's default 2 threads gave 2.3
samples/s, the ``auto`` choice of 1 thread 9.9; ``benchmarks/threads_quickstart.py``).  So:

* **cores** = the CPUs this process may run on: ``os.sched_getaffinity``, capped by a cgroup CPU
  quota (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of v1), divided
  among the processes of one node under ``torchrun`` (``LOCAL_WORLD_SIZE``);
* **busy** = how many of them other processes keep busy: the 1-minute load average scaled to this
  process's share of the machine (load / all CPUs × cores), read once at start-up;
* **workers** (``auto``): on CUDA ``min(8, free − 1)`` (the GPU does the arithmetic, the CPU decodes
  images); on the CPU ``0`` below 4 free cores (the trainer's threads need them more), else
  ``min(4, free // 4)``.  Each worker runs single-threaded (:func:`xmodalzoo.data.loader.single_threaded_worker`);
* **threads** (``auto``): ``OMP_NUM_THREADS`` when the user set it, else the free cores left after
  the workers, at least 1.

``auto`` depends on the load when the run starts, and a different thread count changes the rounding
of reductions, so two runs may differ in the last digits; the choice is printed, recorded in
``environment.json`` (``parallelism``) and can be fixed with ``train.threads`` / ``--threads``.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Union

#: a recipe's ``train.threads`` / ``train.num_workers``: ``auto`` or a number
Auto = Union[Literal["auto"], int]
#: most workers ``auto`` picks (more rarely helps one training process)
MAX_AUTO_WORKERS_CUDA, MAX_AUTO_WORKERS_CPU = 8, 4
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Parallelism:
    """The resolved choice: ``threads`` (intra-op, the trainer process) and ``workers`` (data-loader
    processes, single-threaded each), with what it was made from."""

    threads: int
    workers: int
    cores: int
    busy: float
    threads_from: str  #: "auto", "OMP_NUM_THREADS" or "setting"
    workers_from: str  #: "auto" or "setting"

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``threads: 1 (auto), data workers: 0 (auto); 2 usable cores, 1.3 busy with other processes``."""
        return (f"threads: {self.threads} ({self.threads_from}), data workers: {self.workers} "
                f"({self.workers_from}); {self.cores} usable cores, {self.busy:.1f} busy with other processes")


def resolve_parallelism(threads: Auto, workers: Auto, *, cores: int, busy: float = 0.0,
                        device_type: str = "cpu", omp_num_threads: str | None = None) -> Parallelism:
    """The threads and workers for ``cores`` usable cores of which ``busy`` are taken by others (a pure
    function of its arguments; :func:`choose_parallelism` reads them from the machine)."""
    cores = max(1, int(cores))
    busy = min(float(cores), max(0.0, float(busy)))
    free = max(1, math.floor(cores - busy + 0.5))
    if workers == "auto":
        if device_type == "cuda":
            n_workers = min(MAX_AUTO_WORKERS_CUDA, free - 1)
        else:
            n_workers = 0 if free < 4 else min(MAX_AUTO_WORKERS_CPU, free // 4)
        workers_from = "auto"
    else:
        n_workers, workers_from = int(workers), "setting"
    omp = _positive_int(omp_num_threads)
    if threads != "auto":
        n_threads, threads_from = int(threads), "setting"
    elif omp is not None:
        n_threads, threads_from = omp, "OMP_NUM_THREADS"
    else:
        n_threads, threads_from = max(1, free - n_workers), "auto"
    return Parallelism(n_threads, max(0, n_workers), cores, round(busy, 2), threads_from, workers_from)


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def usable_cores(processes: int = 1) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota, shared by
    ``processes`` processes of one node (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores // max(1, processes))


def cgroup_cpu_limit(root: Path | None = None) -> float | None:
    """The CPU quota in cores of the cgroup mounted at ``root`` (default :data:`CGROUP`; v2 ``cpu.max``,
    else v1 ``cpu/cpu.cfs_quota_us``), None if unlimited."""
    root = CGROUP if root is None else root
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def busy_cores(cores: int) -> float:
    """How many of this process's ``cores`` other processes keep busy: the 1-minute load average as a
    share of every CPU of the machine, times ``cores`` (0 where the load is unknown)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    machine = os.cpu_count() or cores
    return min(1.0, load / machine) * cores


def choose_parallelism(threads: Auto = "auto", workers: Auto = "auto", device_type: str = "cpu") -> Parallelism:
    """:func:`resolve_parallelism` for this machine now (cores, load, ``OMP_NUM_THREADS``, and
    ``LOCAL_WORLD_SIZE`` processes per node under torchrun)."""
    processes = _positive_int(os.environ.get("LOCAL_WORLD_SIZE")) or 1
    cores = usable_cores(processes)
    return resolve_parallelism(threads, workers, cores=cores, busy=busy_cores(cores), device_type=device_type,
                               omp_num_threads=os.environ.get("OMP_NUM_THREADS"))


def apply_parallelism(choice: Parallelism) -> None:
    """Set this process's intra-op threads to ``choice.threads``."""
    import torch

    torch.set_num_threads(choice.threads)

