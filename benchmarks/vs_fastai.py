"""`fit` against real fastai at equal wall time, on the shared datasets' test splits.

For each variant (default: the six small shared datasets' vtab1k variants, their own test
splits), both get the same budget on the same split, resolution and batch size:

* **fit**: ``autotransfer.fit`` with its defaults (every built-in strategy, the last mile
  included), a cold feature cache;
* **fastai**: ``vision_learner`` + ``fine_tune`` with real fastai on the backbone `fit`'s
  ranking put first, its epochs chosen to fill the budget (benchmarks/_fastai_baseline.py).

Reported: test accuracy of each, the difference with its paired standard error (image by
image on the same test images), and the verdict: a win or a loss beyond one SE, else a
tie. Results: ``vs_fastai_<device>`` (table, JSON, plot). Resumable: a variant with
results is not run again unless ``--again``.

    PYTHONPATH=/work/fastai-pkgs python benchmarks/vs_fastai.py --budget 180
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_quietly, parser  # noqa: E402
from _cold_fit import cold_fit, test_correct  # noqa: E402
from _fastai_baseline import fastai_fine_tune  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import load_variant  # noqa: E402

from autotransfer.metrics import paired_difference  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = (
    "hymenoptera/vtab1k",
    "aid_subset/vtab1k",
    "brain_tumor_mri_subset/vtab1k",
    "dtd10_subset/vtab1k",
    "flowers5_subset/vtab1k",
    "notmnist_subset/vtab1k",
)
log = logging.getLogger("vs_fastai")


def run_fit(ds, budget: float, work: Path, seed: int) -> dict:
    """``fit`` with its defaults and a cold cache; its test accuracy image by image."""
    r, seconds = cold_fit(ds, work, budget, seed=seed)
    correct = test_correct(r, ds).astype(int)
    pick = "ensemble" if r.ensemble is not None and r.ensemble.kept else r.best.strategy
    return {
        "val": round(float(r.val_metrics["accuracy"]), 4),
        "test": round(float(correct.mean()), 4),
        "test_reported": (r.test_metrics or {}).get("accuracy"),
        "test_correct": correct.tolist(),
        "pick": f"{pick} / {r.best.source}",
        "trials": len(r.leaderboard),
        "skipped": sum(bool(t.skipped) for t in r.leaderboard),
        "verdict": r.verdict.sentence if r.verdict is not None else "",
        # the first whole network of the ranking (fastai builds its model from the arch)
        "top_backbone": next(
            (b for b in (r.ranking.shortlist if r.ranking else []) if "@" not in b), None
        ),
        "resolution": int(r.model.preprocessing.resolution),
        "seconds": round(seconds, 1),
    }


def compare(fit: dict, fa: dict) -> dict:
    """The difference fit - fastai on the test split, its paired SE, the outcome."""
    a, b = np.array(fit["test_correct"]), np.array(fa["test_correct"])
    d, se = paired_difference(a.astype(float), b.astype(float))
    outcome = "win" if d > se else "loss" if d < -se else "tie"
    return {"difference": round(float(d), 4), "se": round(float(se), 4), "outcome": outcome}


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--budget", type=float, default=180.0, help="seconds each, fit and fastai")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--again", action="store_true", help="run variants that have results")
    p.add_argument("--out", default=str(HERE / "results" / "vs_fastai_cpu"))
    p.add_argument("--work", default=None, help="run folders (default: a temporary folder)")
    args = parse_quietly(p, argv)
    out = Path(args.out)
    path = out.with_suffix(".json")
    data = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    data["machine"], data["budget"] = machine_info(), args.budget
    work = Path(args.work or tempfile.mkdtemp(prefix="vs-fastai-"))
    work.mkdir(parents=True, exist_ok=True)
    for variant in args.variants.split(","):
        if variant in data["rows"] and not args.again:
            continue
        ds = load_variant(variant)
        log.warning("%s: fit for %.0f s", variant, args.budget)
        fit = run_fit(ds, args.budget, work, args.seed)
        backbone = fit["top_backbone"] or "package:efficientnet_lite0"
        log.warning("%s: fastai on %s for %.0f s", variant, backbone, args.budget)
        fa = fastai_fine_tune(ds, backbone, fit["resolution"], args.budget, seed=args.seed)
        data["rows"][variant] = {"fit": fit, "fastai": fa, **compare(fit, fa)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        render(data, out)
    render(data, out)
    return 0


def render(data: dict, out: Path) -> None:
    rows = []
    for variant, r in data["rows"].items():
        fit, fa = r["fit"], r["fastai"]
        rows.append(
            {
                "variant": variant,
                "test images": len(fit["test_correct"]),
                "fit test": fit["test"],
                "fastai test": fa["test"],
                "fit - fastai": f"{100 * r['difference']:+.1f} (SE {100 * r['se']:.1f})",
                "outcome": r["outcome"],
                "fit pick": fit["pick"],
                "fit s": fit["seconds"],
                "fastai": f"{fa['backbone'].split(':')[-1]}, {fa['epochs']}",
                "fastai s": fa["seconds"],
                "fit verdict": fit["verdict"],
            }
        )
    counts = {
        k: sum(r["outcome"] == k for r in data["rows"].values()) for k in ("win", "tie", "loss")
    }
    m = data["machine"]
    lines = [
        f"# fit against real fastai at {data['budget']:.0f} s each ({m.get('device', 'cpu')})",
        "",
        f"Machine: {m.get('machine', '')} ({m.get('cpu', '')}, {m.get('cpu_cores', '')} cores), "
        f"torch {m.get('torch', '')}, commit {m.get('commit', '')}, {m.get('date', '')}.",
        "Both get the same wall clock on the same split; fastai's `vision_learner` + "
        "`fine_tune` runs on the backbone fit's ranking put first, at fit's resolution, its "
        "epochs chosen to fill the budget (benchmarks/_fastai_baseline.py). Test accuracy on "
        "the variant's own test split; the difference in points with its paired SE (image "
        "by image); a win or loss beyond one SE, else a tie.",
        "",
        f"**{counts['win']} wins, {counts['tie']} ties, {counts['loss']} losses.**",
        "",
        markdown_table(rows, list(rows[0]) if rows else []),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if rows:
        fig, ax = subplots(figsize=(8, 3.5))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["fit test"] for r in rows], 0.4, label="fit")
        ax.bar(x + 0.2, [r["fastai test"] for r in rows], 0.4, label="fastai fine_tune")
        ax.set_xticks(x, [r["variant"].split("/")[0].replace("_subset", "") for r in rows])
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right")
        ax.set_title(f"fit vs real fastai at {data['budget']:.0f} s each")
        save_figure(fig, out.with_suffix(".png"))


if __name__ == "__main__":
    sys.exit(main())
