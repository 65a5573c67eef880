"""The last mile, step by step: fit as it was, then with refit, ensemble, no-transfer baselines.

On the ground truth's 12 variants (the VTAB-1k-style variant of each of the six shared
datasets, and the 1-, 5- and 10-shot variants of aerial scenes and flowers), each scored on
the dataset's own test split, every configuration gets the same time budget:

* ``as_was``: the four transfer strategies, no ensemble, no refit, no flip TTA (fit before
  issue 19);
* ``refit``: the same search, the pick refit on train + validation;
* ``ensemble``: and the Caruana ensemble, kept when it wins by more than one SE;
* ``baselines``: and the no-transfer strategies (raw pixels, from scratch) in the study;
* ``defaults``: everything fit does by default (fastai's ``fine_tune`` among the strategies,
  flip TTA measured too).

Each cell predicts the test split once more after its fit (outside the budget) to keep the
per-image results: the standard error of a difference between two configurations is the
paired one. A step wins (loses) when it moves test accuracy up (down) by more than one
standard error, else ties. Resumable: cells already in the JSON are kept (``--again``
measures them again).

    python benchmarks/last_mile.py --budget 120 [--variants hymenoptera/vtab1k,...]
    python benchmarks/last_mile.py --render
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import add_rerun_flags, parse_quietly, parser  # noqa: E402
from _cold_fit import cold_fit, test_correct  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import describe_split, load_variant  # noqa: E402
from ground_truth import default_variants  # noqa: E402

from autotransfer.metrics import paired_difference  # noqa: E402

HERE = Path(__file__).resolve().parent
TRANSFER = ("feature_extraction", "partial_freeze", "full_finetune", "discriminative_lr")
BASELINES = ("raw_pixels", "from_scratch")
CONFIGS = {
    "as_was": dict(strategies=TRANSFER, ensemble=False, refit=False, flip_tta="off"),
    "refit": dict(strategies=TRANSFER, ensemble=False, refit=True, flip_tta="off"),
    "ensemble": dict(strategies=TRANSFER, ensemble=True, refit=True, flip_tta="off"),
    "baselines": dict(strategies=TRANSFER + BASELINES, ensemble=True, refit=True, flip_tta="off"),
    "defaults": dict(strategies=None, ensemble=True, refit=True, flip_tta="auto"),
}
STEPS = list(CONFIGS)
TWELVE = [v for v in default_variants("cpu") if not v.startswith("fashion_mnist/")]


def one_cell(variant: str, config: str, budget: float, resolution: int, work: Path) -> dict:
    """One fit of ``variant`` under ``config``; its test accuracy and per-image results."""
    ds = load_variant(variant)
    r, seconds = cold_fit(ds, work, budget, resolution=resolution, **CONFIGS[config])
    right = test_correct(r, ds)
    return {
        "variant": variant,
        "config": config,
        "split": describe_split(ds),
        "seconds": round(seconds, 1),
        "test": round(float(right.mean()), 4),
        "right": "".join("1" if v else "0" for v in right),
        "pick": f"{r.best.strategy} / {r.best.source}",
        "ensemble": None if r.ensemble is None else r.ensemble.reason,
        "refit": r.refit.get("why"),
        "flip_tta": r.flip_tta.get("why"),
        "verdict": None if r.verdict is None else r.verdict.sentence,
        "trials": len(r.leaderboard),
    }


def compare(data: dict) -> tuple[list[dict], list[dict]]:
    """Per-variant rows (test accuracy per configuration) and per-step summary rows."""
    cells = data["cells"]
    rows, steps = [], []
    for variant, by in cells.items():
        row = {"variant": variant, "split": next(iter(by.values()))["split"]}
        for c in STEPS:
            if c in by:
                row[c] = f"{by[c]['test']:.3f}"
        rows.append(row)
    for before, after in zip(STEPS, STEPS[1:]):
        for base in dict.fromkeys([before, "as_was"]):
            gains, wins, ties, losses = [], 0, 0, 0
            for by in cells.values():
                if before not in by or after not in by or base not in by:
                    continue
                a = np.array([c == "1" for c in by[after]["right"]])
                b = np.array([c == "1" for c in by[base]["right"]])
                d, se = paired_difference(a, b)
                gains.append(d)
                wins, ties, losses = wins + (d > se), ties + (abs(d) <= se), losses + (d < -se)
            if gains:
                steps.append(
                    {
                        "step": f"{after} vs {base}",
                        "variants": len(gains),
                        "mean gain (points)": f"{100 * np.mean(gains):+.2f}",
                        "wins / ties / losses (1 SE)": f"{wins} / {ties} / {losses}",
                        "worst (points)": f"{100 * min(gains):+.1f}",
                    }
                )
    return rows, steps


def commits(data: dict) -> str:
    """The commits the cells were measured at, with their counts (a cell without one was
    measured at the results' first commit)."""
    first = data["machine"].get("commit", "?")
    seen: dict[str, int] = {}
    for by in data["cells"].values():
        for cell in by.values():
            c = cell.get("commit", first)
            seen[c] = seen.get(c, 0) + 1
    return ", ".join(f"{c} ({n} cells)" for c, n in seen.items())


def write(data: dict, out: Path) -> None:
    rows, steps = compare(data)
    m = data["machine"]
    lines = [
        "# The last mile: refit, ensemble and no-transfer baselines, step by step",
        "",
        f"Machine: {m.get('machine', '')} ({m.get('cpu', '')}, {m.get('cpu_cores', '?')} "
        f"cores, device {m.get('device', 'cpu')}), commits {commits(data)}, "
        f"{m.get('date', '')}; budget {data['budget']:.0f} s a fit, resolution "
        f"{data['resolution']} px; `python benchmarks/last_mile.py`.",
        "",
        "## Each step against the one before it, and against fit as it was",
        "",
        markdown_table(steps, list(steps[0]) if steps else ["step"]),
        "",
        "## Test accuracy per variant",
        "",
        markdown_table(rows, ["variant", "split", *STEPS]),
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    plot(data, out.with_suffix(".png"))


def plot(data: dict, path: Path) -> None:
    fig, ax = subplots(figsize=(8, 4))
    cells = data["cells"]
    for i, c in enumerate(STEPS[1:], start=1):
        gains = [
            100 * (by[c]["test"] - by["as_was"]["test"])
            for by in cells.values()
            if c in by and "as_was" in by
        ]
        if gains:
            ax.scatter([i] * len(gains), gains, alpha=0.6)
            ax.hlines(np.mean(gains), i - 0.3, i + 0.3, color="k")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(1, len(STEPS)), [f"{c}\nvs as_was" for c in STEPS[1:]])
    ax.set_ylabel("test accuracy gain (points)")
    ax.set_title("The last mile: each variant (dots) and the mean (bar)")
    save_figure(fig, path)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--budget", type=float, default=120.0, help="seconds a fit")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--variants", default=None, help="comma-separated (default: the 12)")
    p.add_argument("--configs", default=",".join(STEPS))
    p.add_argument("--out", default=str(HERE / "results" / "last_mile_cpu"))
    add_rerun_flags(p, "measure cells already in the results again", "only the tables and plot")
    args = parse_quietly(p, argv)
    out = Path(args.out)
    saved = out.with_suffix(".json")
    data = json.loads(saved.read_text()) if saved.exists() else {"cells": {}}
    data.update(budget=args.budget, resolution=args.resolution)
    data.setdefault("machine", machine_info())
    if not args.render:
        work = Path(tempfile.mkdtemp(prefix="last-mile-"))
        commit = machine_info().get("commit")
        # the ground truth's 12: fashion_mnist (10,000 test images) is benchmarks/scale.py's
        variants = args.variants.split(",") if args.variants else TWELVE
        for variant in variants:
            for config in args.configs.split(","):
                if config in data["cells"].get(variant, {}) and not args.again:
                    continue
                cell = one_cell(variant, config, args.budget, args.resolution, work)
                cell["commit"] = commit
                data["cells"].setdefault(variant, {})[config] = cell
                print(f"{variant} {config}: test {cell['test']} ({cell['pick']})", flush=True)
                write(data, out)  # after every cell: a crash loses nothing
    write(data, out)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
