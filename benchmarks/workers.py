"""Wall time of one fixed study run by 1 and by 2 worker processes.

The study: `hymenoptera` (ants and bees, 243 training photos, its own test split) at
128 px, two offline ImageNet backbones, frozen-feature and short partial-freeze trials,
a fixed number of trials, no pruning, no tracking (the compute only). Both runs rank from
the same warm feature cache (a warm-up fit fills it first), so the search is what differs:

* **1 process**: ``fit`` alone;
* **1 process, 1 thread**: the same with one torch thread (``OMP_NUM_THREADS=1``);
* **2 processes**: ``fit(devices=["cpu", "cpu"])``: the fit and one ``autotransfer worker``
  on the same SQLite study, exactly ``n_trials`` between them; on CPU devices each process
  gets its share of the cores (here one thread each);
* **2 processes, 2 threads each**: the same with ``OMP_NUM_THREADS=2``, each process taking
  every core (what they did before the split), for comparison.

Prints a Markdown table and writes it, with the JSON and the machine, to
benchmarks/results/workers_<device>.{md,json}. On a GPU machine, ``--device cuda`` runs
the same with ``cuda:0`` for both processes (two workers on one GPU).

    python benchmarks/workers.py [--trials 12] [--device cpu]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_quietly, parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402
from autotransfer.search.study import open_study  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKBONES = ("package:mobilenetv2_100", "package:efficientnet_lite0")
STUDY = dict(
    backbones=BACKBONES,
    strategies=("feature_extraction", "partial_freeze"),
    resolution=128,
    time_budget=None,
    trial_time_limit="60s",
    pruner="none",
    hedge=False,
    top_k=2,
    trackers=(),
    progress=False,
    seed=0,
)


def _fit(root: Path, run_dir: Path, n_trials: int, **options) -> dict:
    start = time.perf_counter()
    result = autotransfer.fit(root, run_dir=str(run_dir), n_trials=n_trials, **STUDY, **options)
    wall = time.perf_counter() - start
    study = open_study(run_dir, storage=None, study_name="autotransfer", seed=0, pruner="none")
    done = [t for t in study.get_trials() if t.state.is_finished()]
    by_process: dict[int, int] = {}
    for t in done:
        pid = t.user_attrs["worker"]["pid"]
        by_process[pid] = by_process.get(pid, 0) + 1
    search = result.phases.get("search", wall)
    return {
        "wall s": round(wall, 1),
        "search s": round(search, 1),
        "trials": len(done),
        "trials per process": sorted(by_process.values(), reverse=True),
        "trials/min": round(60 * len(done) / search, 2),
        "best val": round(result.best.val_accuracy, 4),
        "test": None if result.test_metrics is None else round(result.test_metrics["accuracy"], 4),
    }


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """``n`` torch threads in this process and in the workers it starts (None: as is)."""
    if n is None:
        yield
        return
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (two workers on cuda:0)")
    args = parse_quietly(p, argv)
    root = SHARED / "hymenoptera"
    device = "cuda:0" if args.device == "cuda" else args.device
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _fit(root, tmp / "warm-up", 1, device=device)  # the ranking's features, cached
        for name, threads, options in (
            ("1 process", None, {"device": device}),
            ("1 process, 1 thread", 1, {"device": device}),
            ("2 processes (the cores split: the default)", None, {"devices": [device, device]}),
            ("2 processes, 2 threads each", 2, {"devices": [device, device]}),
        ):
            with _torch_threads(threads):
                result = _fit(root, tmp / re.sub(r"\W+", "-", name), args.trials, **options)
            rows.append({"run": name, **result})
            print(rows[-1], flush=True)
    speedup = {r["run"]: round(rows[0]["search s"] / r["search s"], 2) for r in rows[1:]}
    columns = list(rows[0])
    table = markdown_table(rows, columns)
    machine = machine_info()
    text = (
        f"# One study, 1 and 2 worker processes ({args.device})\n\n"
        f"Machine: {machine['machine']} ({machine['cpu_cores']} cores, {machine['device']}, "
        f"torch {machine['torch_threads']} threads a process), commit {machine['commit']}, "
        f"{machine['date']}.\n\n{table}\n\n"
        f"Search speed-up against 1 process: "
        + ", ".join(f"{k} **{v}x**" for k, v in speedup.items())
        + f" ({args.trials} trials: frozen-feature "
        "heads and short partial-freeze fine-tunes of two ImageNet backbones on hymenoptera at "
        "128 px; the same warm feature cache).\n"
    )
    print(text)
    out = HERE / "results" / f"workers_{args.device}"
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "speedup": speedup, "machine": machine}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
