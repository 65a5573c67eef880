"""`fit` against two fixed recipes on every real dataset in ../shared/datasets.

For each dataset, with the offline ImageNet backbones and the same wall-clock budget:

* **fit**: `autotransfer.fit(train folder, time_budget=B)` with default settings (rank the
  backbones, study over the shortlist x every strategy); its pick is scored once on the
  dataset's own test split;
* **linear probe**: logistic regression (C = 1) on the frozen features of the first backbone
  of fit's ranking;
* **fixed fine-tune**: a full fine-tune of that backbone with the default (BiT-HyperRule)
  hyperparameters and no search, given the whole budget B for its one trial.

All three run through the engine (`fit` restricted to one backbone and one strategy for the
baselines) at the resolution fit chooses, on the same split (validation carved from train
with the same seed). Writes a Markdown table and JSON to benchmarks/results/.

    python benchmarks/fit_vs_baselines.py [--budget 10m] [--datasets hymenoptera,aid_subset]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_quietly, parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402

HERE = Path(__file__).resolve().parent


def _run(root: Path, run_dir: Path, **options) -> tuple[autotransfer.FitResult, float]:
    start = time.perf_counter()
    result = autotransfer.fit(root, run_dir=str(run_dir), trackers=(), progress=False, **options)
    return result, time.perf_counter() - start


def _baseline(
    root: Path, run_dir: Path, backbone: str, strategy: str, **options
) -> tuple[autotransfer.FitResult, float]:
    """A fixed recipe: ``fit`` restricted to one backbone, one strategy and one trial."""
    return _run(
        root,
        run_dir,
        backbones=(backbone,),
        top_k=1,
        strategies=(strategy,),
        n_trials=1,
        **options,
    )


def _counts(result: autotransfer.FitResult) -> str:
    states = [r.state for r in result.leaderboard]
    return "/".join(str(states.count(s)) for s in ("complete", "pruned", "failed"))


BUILTIN = ("feature_extraction", "partial_freeze", "full_finetune", "discriminative_lr")


def bench_dataset(name: str, budget: str, work: Path, strategies: tuple[str, ...]) -> dict:
    root = SHARED / name
    fit, t_fit = _run(root, work / name / "fit", time_budget=budget, strategies=strategies)
    first = fit.ranking.rows[0].backbone
    lp, t_lp = _baseline(
        root, work / name / "linear_probe", first, "feature_extraction", time_budget=None
    )
    ft, t_ft = _baseline(
        root,
        work / name / "fixed_finetune",
        first,
        "full_finetune",
        time_budget=budget,
        trial_time_limit=budget,
    )
    row = {
        "dataset": name,
        "train": fit.descriptor.split_sizes["train"],
        "classes": fit.descriptor.num_classes,
        "resolution": fit.model.preprocessing.resolution,
        "fit pick": f"{fit.best.strategy} / {fit.best.backbone.split(':')[-1]}",
        "fit test acc": round(fit.test_metrics["accuracy"], 4),
        "linear probe test acc": round(lp.test_metrics["accuracy"], 4),
        "fixed fine-tune test acc": round(ft.test_metrics["accuracy"], 4),
        "first backbone": first.split(":")[-1],
        "fit trials c/p/f": _counts(fit),
        "fit s": round(t_fit),
        "fine-tune s": round(t_ft),
        "fine-tune epochs": ft.best.info.get("epochs_run"),
    }
    best_baseline = max(row["linear probe test acc"], row["fixed fine-tune test acc"])
    row["fit - best baseline"] = round(row["fit test acc"] - best_baseline, 4)
    record = {
        "row": row,
        "strategies": list(strategies),
        "fit": fit.to_dict(),
        "linear_probe": lp.to_dict(),
        "fixed_finetune": ft.to_dict(),
        "seconds": {"fit": t_fit, "linear_probe": t_lp, "fixed_finetune": t_ft},
    }
    return record


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--datasets", default=None, help="comma-separated names (default: all)")
    p.add_argument("--budget", default="10m")
    p.add_argument(
        "--strategies", default=",".join(BUILTIN), help="fit's strategies (default: built-ins)"
    )
    p.add_argument("--out", default=str(HERE / "results" / "fit_vs_baselines_cpu"))
    p.add_argument("--work", default=None, help="run folders (default: a temporary folder)")
    p.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON")
    args = parse_quietly(p, argv)
    names = (
        args.datasets.split(",")
        if args.datasets
        else sorted(d.name for d in SHARED.iterdir() if (d / "train").is_dir())
    )
    work = Path(args.work or tempfile.mkdtemp(prefix="autotransfer-fitbench-"))
    os.environ.setdefault("AUTOTRANSFER_CACHE", str(work / "cache"))
    out = Path(args.out)
    previous = (
        json.loads(out.with_suffix(".json").read_text())
        if out.with_suffix(".json").exists()
        else {"datasets": {}}
    )
    records = previous.get("datasets", {})
    if args.render:
        _write(out, records, previous.get("budget", args.budget), previous.get("machine"))
        return 0
    for name in names:
        commit = machine_info()["commit"]  # the code measured: HEAD when the dataset starts
        records[name] = bench_dataset(name, args.budget, work, tuple(args.strategies.split(",")))
        records[name]["commit"] = commit
        print(json.dumps(records[name]["row"]), flush=True)
        _write(out, records, args.budget)
    return 0


def _verdict(record: dict) -> dict:
    """The test-set size, one binomial standard error at the best baseline's accuracy, and
    win / tie / loss (a difference within one standard error is a tie)."""
    row = dict(record["row"])
    n = int(record["fit"]["test_metrics"]["num_images"])
    base = max(row["linear probe test acc"], row["fixed fine-tune test acc"])
    se = (base * (1 - base) / n) ** 0.5
    diff = row["fit - best baseline"]
    row["test images"] = n
    row["1 SE"] = round(se, 4)
    row["verdict"] = "tie" if abs(diff) <= se else ("win" if diff > 0 else "loss")
    row["commit"] = record.get("commit", "")
    return row


def _write(out: Path, records: dict, budget: str, info: dict | None = None) -> None:
    rows = [_verdict(records[k]) for k in sorted(records)]
    info = info or machine_info()
    md = [
        f"# fit against a linear probe and a fixed fine-tune ({budget} budget, CPU)",
        "",
        "Test accuracy on each dataset's own test split. fit: default settings, all offline "
        "ImageNet backbones. Baselines on the first backbone of fit's ranking: a linear probe "
        "(C = 1) on frozen features, and a full fine-tune with the default BiT-HyperRule "
        "hyperparameters given the whole budget for its single run. Same resolution, split "
        "and seed for all three. `fit trials c/p/f`: complete / pruned / failed. `1 SE`: one "
        "binomial standard error of the best baseline's test accuracy; a difference within it "
        "is called a tie. `commit`: the code each row measured.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        "Machine (its commit: see the column): "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k != "commit"),
        "",
        "Reproduce: `python benchmarks/fit_vs_baselines.py --budget " + budget + "`",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "budget": budget, "datasets": records}, indent=2, default=str)
    )


if __name__ == "__main__":
    sys.exit(main())
