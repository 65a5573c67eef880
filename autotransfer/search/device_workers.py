"""One worker per device: ``fit(..., devices=["cuda:0", "cuda:1"])`` trains on the first
device itself and starts an ``autotransfer worker`` process for each other one, on the
same study (exactly ``n_trials`` between them: :mod:`autotransfer.search.trial_limit`).

CPU "devices" split the cores: each process (the fit's included) gets ``cores // n`` torch
threads, since processes that each take every core slow one another down
(``benchmarks/results/workers_cpu.md``: 0.61x oversubscribed, 0.97x with the cores split).

The workers read the frozen features that the fit's ranking extracted from the same disk
cache; each decodes the training images it needs into a cache of its own (an image cache
in memory, or an unnamed memory map, is not shared between processes). They run as
:class:`~autotransfer.tracking.server_process.ServerProcess` children, so they end with
the fit however it ends, and their output goes to ``<run_dir>/logs/worker-<device>.log``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from autotransfer.tracking.server_process import ServerProcess

log = logging.getLogger(__name__)


def start_workers(
    run_dir: Path, devices: Sequence[str], time_left: float | None
) -> list[ServerProcess]:
    """An ``autotransfer worker`` on ``run_dir`` per device, with the fit's time left."""
    workers = []
    env = dict(os.environ)
    threads = cpu_threads(len(devices) + 1)  # the workers and the fit
    if threads and all(d.startswith("cpu") for d in devices) and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    logs = Path(run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for device in devices:
        args = [
            sys.executable,
            "-m",
            "autotransfer",
            "-q",
            "worker",
            str(run_dir),
            "--device",
            device,
        ]
        if time_left is not None:
            args += ["--time-budget", f"{max(1, math.floor(time_left))}s"]
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", device)
        with open(logs / f"worker-{name}.log", "ab") as out:
            workers.append(
                ServerProcess(args, env=env, name=f"worker on {device}", output=out).start()
            )
        log.info("Started a worker on %s (pid %d).", device, workers[-1].pid)
    return workers


def cpu_threads(processes: int) -> int | None:
    """Torch threads for each of ``processes`` sharing this machine's cores (None: one
    process, nothing to split).

    >>> cpu_threads(1) is None, cpu_threads(10_000)
    (True, 1)
    """
    if processes < 2:
        return None
    return max(1, (os.cpu_count() or 1) // processes)


@contextlib.contextmanager
def sharing_cores(devices: Sequence[str]) -> Iterator[None]:
    """While the fit trains on a CPU beside its workers: its share of the cores."""
    threads = cpu_threads(len(devices))
    if threads is None or not devices[0].startswith("cpu") or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def wait_for(workers: Sequence[ServerProcess]) -> None:
    """Wait until every worker has ended (each stops when the study has its trials or
    its time is spent); a worker that failed is reported, its trials stand."""
    for w in workers:
        code = w.wait()
        if code != 0:
            log.warning("The %s (pid %d) ended with status %d; see its log.", w.name, w.pid, code)
