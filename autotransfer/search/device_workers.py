"""One worker per device: ``fit(..., devices=["cuda:0", "cuda:1"])`` trains on the first
device itself and starts an ``autotransfer worker`` process for each other one, on the
same study (exactly ``n_trials`` between them: :mod:`autotransfer.search.trial_limit`).

The workers read the frozen features that the fit's ranking extracted from the same disk
cache; each decodes the training images it needs into a cache of its own (an image cache
in memory, or an unnamed memory map, is not shared between processes). They run as
:class:`~autotransfer.tracking.server_process.ServerProcess` children, so they end with
the fit however it ends, and their output goes to ``<run_dir>/logs/worker-<device>.log``.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from autotransfer.tracking.server_process import ServerProcess

log = logging.getLogger(__name__)


def start_workers(
    run_dir: Path, devices: Sequence[str], time_left: float | None
) -> list[ServerProcess]:
    """An ``autotransfer worker`` on ``run_dir`` per device, with the fit's time left."""
    workers = []
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
            workers.append(ServerProcess(args, name=f"worker on {device}", output=out).start())
        log.info("Started a worker on %s (pid %d).", device, workers[-1].pid)
    return workers


def wait_for(workers: Sequence[ServerProcess]) -> None:
    """Wait until every worker has ended (each stops when the study has its trials or
    its time is spent); a worker that failed is reported, its trials stand."""
    for w in workers:
        code = w.wait()
        if code != 0:
            log.warning("The %s (pid %d) ended with status %d; see its log.", w.name, w.pid, code)
