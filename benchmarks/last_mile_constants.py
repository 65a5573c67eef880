"""The last mile's constants, measured on real fits: the run folders ``last_mile.py`` leaves.

Each fit of ``benchmarks/last_mile.py`` leaves its run folder (``run-*`` in the work folder
it makes, ``last-mile-*`` in the system's temporary folder). Their ``fit_result.json`` and
``fit_settings.json`` say, per fit, what each constant of :mod:`autotransfer.search.finish`
and :mod:`autotransfer.search.search_run` decided:

* ``REFIT_MARGIN`` (1.2): a refit's seconds over the pace it was predicted at (the pick's
  training seconds, scaled to the step it was selected at);
* ``REFIT_MIN_STEPS`` (0.9) and ``LAST_MILE_SHARE`` (0.2): how often a refit was cut by the
  deadline, or not started for want of time, and what it would have needed;
* ``ENSEMBLE_POOL`` (8): where the kept ensembles' members rank among the complete trials;
* the budget: the fit's seconds over its budget.

    python benchmarks/last_mile_constants.py --runs '/tmp/last-mile-*/run-*'
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parse_quietly, parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402

from autotransfer.search.finish import REFIT_MIN_STEPS  # noqa: E402
from autotransfer.search.search_run import LAST_MILE_SHARE, REFIT_MARGIN  # noqa: E402
from autotransfer.search.selection import ENSEMBLE_POOL  # noqa: E402

HERE = Path(__file__).resolve().parent


def read_fits(pattern: str) -> list[dict]:
    """Each run folder's result and settings (folders without a result are skipped)."""
    fits = []
    for folder in sorted(glob.glob(pattern)):
        result = Path(folder) / "model" / "fit_result.json"
        settings = Path(folder) / "fit_settings.json"
        if result.exists() and settings.exists():
            fits.append(
                {**json.loads(result.read_text()), "settings": json.loads(settings.read_text())}
            )
    return fits


def predicted_refit(best: dict) -> float:
    """The refit's seconds as ``refit_pick`` predicts them, before the margin."""
    info = best.get("info") or {}
    pace = float(info.get("train_seconds") or best.get("seconds") or 0.0)
    if info.get("best_step") and info.get("steps_run"):
        pace *= int(info["best_step"]) / max(1, int(info["steps_run"]))
    return pace


def outcome(refit: dict) -> str:
    why = refit.get("why", "")
    if refit.get("done"):
        return "done"
    for key, name in (
        ("refit is off", "off"),
        ("ensemble", "ensemble served"),
        ("ran out of time", "cut by the deadline"),
        ("would take about", "no time left"),
    ):
        if key in why:
            return name
    return why[:40] or "unknown"


def member_ranks(fit: dict) -> list[int]:
    """Where each member of a kept ensemble ranks among the complete trials (1: the best)."""
    ens = fit.get("ensemble") or {}
    if not ens.get("kept"):
        return []
    done = [r for r in fit["leaderboard"] if r["state"] == "complete" and r.get("val_accuracy")]
    order = [r["number"] for r in sorted(done, key=lambda r: (-r["val_accuracy"], r["number"]))]
    return [order.index(int(t)) + 1 for t in ens["weights"] if int(t) in order]


def summary(fits: list[dict]) -> dict:
    ratios, needs, outcomes, ranks, pools, use = [], [], {}, [], [], []
    for fit in fits:
        budget = fit["settings"].get("time_budget")
        refit, best = fit.get("refit") or {}, fit.get("best") or {}
        name = outcome(refit)
        outcomes[name] = outcomes.get(name, 0) + 1
        predicted = predicted_refit(best)
        if refit.get("done") and refit.get("steps") and predicted > 1.0:
            ratios.append(float(refit["seconds"]) / predicted)
        if name == "no time left" and budget:
            needs.append(REFIT_MARGIN * predicted / budget)
        ranks += member_ranks(fit)
        if (fit.get("ensemble") or {}).get("kept"):
            pools.append(sum(r["state"] == "complete" for r in fit["leaderboard"]))
        if budget:
            use.append(float(fit["seconds"]) / budget)
    return {
        "fits": len(fits),
        "refit_ratio": ratios,
        "refit_outcomes": outcomes,
        "refit_need_share": needs,
        "member_ranks": ranks,
        "complete_trials_of_kept_ensembles": pools,
        "budget_use": use,
    }


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    v = np.asarray(values)
    return f"{np.median(v):.2f} (min {v.min():.2f}, max {v.max():.2f}, n {len(v)})"


def write(data: dict, out: Path) -> None:
    s = data["summary"]
    rows = [
        {
            "constant": f"REFIT_MARGIN {REFIT_MARGIN}",
            "measured": "refit seconds / predicted: " + spread(s["refit_ratio"]),
            "beyond it": sum(r > REFIT_MARGIN for r in s["refit_ratio"]),
        },
        {
            "constant": f"REFIT_MIN_STEPS {REFIT_MIN_STEPS}",
            "measured": "refits: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["refit_outcomes"].items())),
            "beyond it": s["refit_outcomes"].get("cut by the deadline", 0),
        },
        {
            "constant": f"LAST_MILE_SHARE {LAST_MILE_SHARE}",
            "measured": "a refit not started: its need / budget: " + spread(s["refit_need_share"]),
            "beyond it": sum(n > LAST_MILE_SHARE for n in s["refit_need_share"]),
        },
        {
            "constant": f"ENSEMBLE_POOL {ENSEMBLE_POOL}",
            "measured": "kept ensembles' member ranks: " + spread(s["member_ranks"]),
            "beyond it": sum(r > ENSEMBLE_POOL - 1 for r in s["member_ranks"]),
        },
        {
            "constant": "the budget",
            "measured": "fit seconds / budget: " + spread(s["budget_use"]),
            "beyond it": sum(u > 1.0 for u in s["budget_use"]),
        },
    ]
    lines = [
        "# The last mile's constants, on the fits of last_mile.py",
        "",
        f"{s['fits']} fits, made at {data.get('fits_at') or 'the commit below'}. "
        f"Machine: {data['machine']}.",
        "",
        "'beyond it', against the constants as they are now: refits slower than the margin;",
        "refits the deadline cut; refits not started that needed more than the share;",
        "members ranked at the pool's last place or lower (a bigger pool might have found",
        "more); fits over their budget.",
        "",
        markdown_table(rows, ["constant", "measured", "beyond it"]),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--runs", default="/tmp/last-mile-*/run-*", help="glob of run folders")
    p.add_argument("--out", default=str(HERE / "results" / "last_mile_constants_cpu"))
    p.add_argument("--fits-at", default=None, help="the commit the fits were made at")
    args = parse_quietly(p, argv)
    fits = read_fits(args.runs)
    if not fits:
        raise SystemExit(f"no fit results under {args.runs}: run benchmarks/last_mile.py first")
    data = {"machine": machine_info(), "fits_at": args.fits_at, "summary": summary(fits)}
    out = Path(args.out)
    write(data, out)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
