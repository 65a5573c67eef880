"""How close `fit` gets to the exhaustive best within a fraction of its cost, against
fixed recipes given the same time.

The exhaustive grid is the ground truth of a variant (benchmarks/ground_truth.py):
every candidate x (linear-probe grid + fine-tune grid), and every whole network x fit's
other strategies (partial freeze, discriminative learning rates, at their defaults) once
all of them are measured; its cost the sum of the seconds those trainings and feature
passes took, its best the best validation accuracy in it.
For each budget (5, 10, 25, 50 % of that cost), each method gets the budget as its
wall clock, on the same split, resolution and batch size as the ground truth, with a
cold feature cache (what a user's first run pays):

* **fit**: ``autotransfer.fit`` with default settings over the ground truth's candidates
  (the cuts included, the random control left out);
* **seed-style default**: a full fine-tune of the largest offline backbone with the
  default (BiT-HyperRule) hyperparameters, no search;
* **BiT-HyperRule on every backbone**: the HyperRule fine-tune of each whole offline
  backbone, each given an equal share of the budget, the best by validation kept;
* **fastai fine_tune**: real fastai's ``vision_learner`` + ``fine_tune`` (one frozen
  epoch, then unfrozen with discriminative learning rates, its epochs filling the
  budget; benchmarks/_fastai_baseline.py) on the largest backbone. Runs measured
  before 2026-12-03 used a hand-written imitation through fit's loop.

Reported: validation accuracy of each method's pick against the exhaustive best (as a
fraction: 1.0 is the best the grid found), its test accuracy, and the budget at which
`fit` first reaches 99 % of the exhaustive best. Results: ``budget_efficiency_<device>``.

    python benchmarks/budget_efficiency.py --variants hymenoptera/vtab1k [--fractions 0.05,0.1]

``--again`` runs the given methods again where they have results (after an engine
change: ``--methods fit --again``). ``--rank-share S`` runs only ``fit``, with the
ranking limited to that share of the budget, into a table of its own (what scoring
fewer candidates costs, and whether the budget holds).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import add_rerun_flags, parse_quietly, parser  # noqa: E402
from _cold_fit import cold_fit  # noqa: E402
from _fastai_baseline import fastai_fine_tune  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import load_variant  # noqa: E402
from fit_vs_baselines import BUILTIN  # noqa: E402  (the four built-in strategies)
from ground_truth import CONTROL, is_whole, short  # noqa: E402
from ground_truth import candidates as protocol_candidates  # noqa: E402
from ground_truth import load as load_truth

import autotransfer  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FRACTIONS = (0.05, 0.10, 0.25, 0.50)
log = logging.getLogger("budget_efficiency")
METHODS = ("fit", "seed-style default", "BiT-HyperRule every backbone", "fastai fine_tune")


def _fit(ds, work: Path, budget: float, protocol: dict, device: str | None, **options):
    """One ``fit`` with a cold cache of its own; (val accuracy, test accuracy, pick, s)."""
    r, seconds = cold_fit(
        ds,
        work,
        budget,
        resolution=protocol["resolution"],
        batch_size=protocol["batch_size"],
        seed=protocol["seed"],
        device=device,
        **options,
    )
    test = (r.test_metrics or {}).get("accuracy")
    return {
        "rank_share": options.get("rank_share", autotransfer.FitSettings().rank_share),
        "val": round(float(r.val_metrics["accuracy"]), 4),
        "test": None if test is None else round(float(test), 4),
        "pick": f"{r.best.strategy} / {short(r.best.backbone)}",
        "trials": len(r.leaderboard),
        "seconds": round(seconds, 1),
        # what the search tried, best first: which candidates a budget let it reach
        "tried": [
            {
                "strategy": t.strategy,
                "backbone": short(t.backbone),
                "state": t.state,
                "val": None if t.val_accuracy is None else round(float(t.val_accuracy), 4),
                "seconds": None if t.seconds is None else round(float(t.seconds), 1),
            }
            for t in r.leaderboard
        ],
    }


def run_methods(
    ds,
    budget: float,
    whole: list[str],
    candidates: list[str],
    protocol: dict,
    device: str | None,
    work: Path,
    methods: tuple[str, ...],
) -> dict:
    from autotransfer.backbones.candidates import count_params
    from autotransfer.backbones.load import resolve_backbones

    largest = max(whole, key=lambda b: count_params(resolve_backbones([b])[0].arch) or 0)
    # fit searches the grid's space: its candidates, cuts included, less the random control
    space = tuple(c for c in candidates if c != CONTROL)

    def recipe(strategy: str, backbone: str, seconds: float) -> dict:
        """A fixed recipe: one strategy on one backbone, one trial given ``seconds``."""
        return _fit(
            ds,
            work,
            seconds,
            protocol,
            device,
            backbones=(backbone,),
            top_k=1,
            strategies=(strategy,),
            n_trials=1,
            trial_time_limit=seconds,
        )

    out = {}
    for m in methods:
        if m == "fit":  # the built-in strategies, not the baseline registered below
            out[m] = _fit(ds, work, budget, protocol, device, backbones=space, strategies=BUILTIN)
        elif m == "seed-style default":
            out[m] = recipe("full_finetune", largest, budget)
        elif m == "fastai fine_tune":
            os.environ["AUTOTRANSFER_CACHE"] = tempfile.mkdtemp(dir=work, prefix="cache-")
            fa = fastai_fine_tune(
                ds,
                largest,
                protocol["resolution"],
                budget,
                batch_size=protocol["batch_size"],
                seed=protocol["seed"],
            )
            out[m] = {
                **{k: fa[k] for k in ("val", "test", "seconds")},
                "pick": f"fastai fine_tune / {short(largest)} ({fa['epochs']})",
                "trials": 1,
            }
        elif m == "BiT-HyperRule every backbone":
            share = budget / len(whole)
            runs = [recipe("full_finetune", b, share) for b in whole]
            best = max(runs, key=lambda r: r["val"])
            out[m] = {
                **best,
                "seconds": round(sum(r["seconds"] for r in runs), 1),
                "trials": sum(r["trials"] for r in runs),
            }
    return out


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--device", default="cpu", help="whose ground truth, and where to run")
    p.add_argument(
        "--variants",
        required=False,
        default=None,
        help="comma-separated (default: every variant with complete ground truth)",
    )
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--rank-share",
        type=float,
        default=None,
        help="run only fit, with this rank_share, into the ranking-share table "
        "(default: the engine's, into the main table)",
    )
    add_rerun_flags(
        p,
        again="run the methods again where they have results (after an engine change)",
        render="only rewrite the tables and plot",
    )
    args = parse_quietly(p, argv)
    truth = load_truth(args.device)
    protocol = truth["protocol"]
    out = RESULTS / f"budget_efficiency_{args.device}"
    data = (
        json.loads(out.with_suffix(".json").read_text())
        if out.with_suffix(".json").exists()
        else {"variants": {}}
    )
    if not args.render:
        variants = args.variants.split(",") if args.variants else sorted(truth["cells"])
        for variant in variants:
            data["variants"].setdefault(variant, {"runs": {}})
        from_truth(data, truth)
        work = Path(tempfile.mkdtemp(prefix="autotransfer-budget-"))
        for variant in variants:
            candidates = sorted(truth["cells"][variant])
            whole = [c for c in candidates if is_whole(c)]
            ds = load_variant(variant)
            entry = data["variants"][variant]
            if entry.get("missing_cells"):
                log.warning(
                    "The ground truth of %s lacks %s: its exhaustive cost is undercounted. "
                    "Run benchmarks/ground_truth.py for it first.",
                    variant,
                    ", ".join(entry["missing_cells"]),
                )
            entry["candidates"] = candidates
            cost = entry["exhaustive_seconds"]
            for frac in map(float, args.fractions.split(",")):
                key = f"{frac:g}"
                if args.rank_share is not None:
                    share = entry.setdefault("rank_share", {}).setdefault(
                        f"{args.rank_share:g}", {}
                    )
                    if key not in share:
                        share[key] = {
                            **_fit(
                                ds,
                                work,
                                frac * cost,
                                protocol,
                                None if args.device == "cpu" else args.device,
                                backbones=tuple(c for c in candidates if c != CONTROL),
                                strategies=BUILTIN,
                                rank_share=args.rank_share,
                            ),
                            "budget_seconds": round(frac * cost, 1),
                            "commit": machine_info()["commit"],
                        }
                        out.with_suffix(".json").write_text(json.dumps(data, indent=1))
                    continue
                have = entry["runs"].get(key, {})
                todo = tuple(m for m in args.methods.split(",") if args.again or m not in have)
                if not todo:
                    continue
                res = run_methods(
                    ds,
                    frac * cost,
                    whole,
                    candidates,
                    protocol,
                    None if args.device == "cpu" else args.device,
                    work,
                    todo,
                )
                commit = machine_info()["commit"]
                entry["runs"][key] = {
                    **have,
                    **{
                        m: {**r, "commit": commit, "budget_seconds": round(frac * cost, 1)}
                        for m, r in res.items()
                    },
                }
                entry["commit"] = machine_info()["commit"]
                data["machine"] = machine_info()
                out.with_suffix(".json").write_text(json.dumps(data, indent=1))
                print(
                    json.dumps(
                        {
                            "variant": variant,
                            "fraction": frac,
                            **{m: r["val"] for m, r in res.items()},
                        }
                    ),
                    flush=True,
                )
    from_truth(data, truth)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    write(data, out, args.device)
    return 0


def _truth_of(truth: dict, variant: str, expected: set[str]) -> dict:
    """What the ground truth says of a variant: the grid's cost and best validation
    accuracy, and the validation split's size (how coarse its accuracies are).
    ``expected``: the protocol's candidates."""
    cells = truth["cells"][variant]
    # cells the protocol has and this variant lacks (a ground-truth step cut short): the
    # grid's cost is undercounted and its best may be low, which the tables say
    missing = sorted(expected - set(cells))
    others = truth["protocol"].get("strategies", [])
    # fit's other strategies count once every whole network of the variant has them all
    whole = [c for b, c in cells.items() if is_whole(b)]
    complete = bool(others) and all(set(others) <= set(c.get("strategies", {})) for c in whole)
    seconds, best = ("all_seconds", "all_best") if complete else ("seconds", "best")
    return {
        "exhaustive_seconds": round(sum(c.get(seconds, c["seconds"]) for c in cells.values()), 1),
        "exhaustive_best": max(c.get(best, c["best"]) for c in cells.values()),
        "exhaustive_strategies": ["linear probe", "fine-tune", *(others if complete else [])],
        "missing_cells": missing,
        "val_images": int(truth["variants"][variant]["train/val/test"].split("/")[1]),
    }


def from_truth(data: dict, truth: dict) -> None:
    """Every variant's entry from the ground truth as it is now (its cells may have been
    measured again). A run keeps the budget it was given: runs from before runs recorded
    it were given their fraction of the grid's cost as stored beside them."""
    expected = set(protocol_candidates(truth["protocol"]))
    for variant, entry in data["variants"].items():
        old = entry.get("exhaustive_seconds")
        runs = [*entry["runs"].items()]
        runs += [
            (k, {"_": r})
            for share in entry.get("rank_share", {}).values()
            for k, r in share.items()
        ]
        for key, by_method in runs:
            for r in by_method.values():
                if "budget_seconds" not in r and old is not None:
                    r["budget_seconds"] = round(float(key) * old, 1)
        entry.update(_truth_of(truth, variant, expected))


def _missing(e: dict) -> str:
    n = len(e.get("missing_cells", []))
    return f" ({n} cells missing: undercounted)" if n else ""


def budget_share(e: dict, run: dict) -> float:
    """A run's budget as a share of the variant's exhaustive grid as it is now (a run asked
    for 5 % of a grid that later gained strategies had a smaller share of the larger one)."""
    return run["budget_seconds"] / e["exhaustive_seconds"]


def rows_of(data: dict) -> list[dict]:
    rows = []
    for variant, e in sorted(data["variants"].items()):
        for key, runs in sorted(e["runs"].items(), key=lambda kv: float(kv[0])):
            for m in METHODS:
                if m not in runs:
                    continue
                r = runs[m]
                rows.append(
                    {
                        "variant": variant,
                        "budget": f"{budget_share(e, r):.1%}",
                        "asked": f"{float(key):.0%}",
                        "budget s": round(r["budget_seconds"]),
                        "method": m,
                        "val acc": r["val"],
                        "of exhaustive best": round(r["val"] / e["exhaustive_best"], 3),
                        "best trial": _best_trial(r),
                        "test acc": r["test"],
                        "pick": r["pick"],
                        "trials": r["trials"],
                        "seconds": r["seconds"],
                    }
                )
    return rows


def _best_trial(run: dict) -> float:
    """The best validation accuracy any of the run's trials reached: above the pick's when
    the selection took a trial within one SE of it for its lower log-loss."""
    vals = [t["val"] for t in run.get("tried", []) if t.get("val") is not None]
    return max([run["val"], *vals])


def reach(
    data: dict, share: float = 0.99, within_se: bool = False, trial: bool = False
) -> dict[str, str]:
    """Per variant: the smallest budget at which fit's pick (``trial``: any of its trials)
    reached ``share`` of the best, or (``within_se``) came within one binomial standard
    error of it on the validation split, the tolerance inside which fit's own selection
    counts trials as tied (from 15 training images per class)."""
    from autotransfer.search.selection import tolerance

    out = {}
    for variant, e in data["variants"].items():
        best = e["exhaustive_best"]
        floor = best - tolerance(best, e["val_images"]) if within_se else share * best
        hit = [
            budget_share(e, runs["fit"])
            for runs in e["runs"].values()
            if "fit" in runs
            and (_best_trial(runs["fit"]) if trial else runs["fit"]["val"]) >= floor - 1e-9
        ]
        out[variant] = f"{min(hit):.1%}" if hit else "not within the budgets tried"
    return out


def overrun(e: dict) -> str:
    """fit's longest run past its budget over the budgets tried: "+4.9 s", or "none"."""
    over = [
        r["fit"]["seconds"] - r["fit"]["budget_seconds"] for r in e["runs"].values() if "fit" in r
    ]
    worst = max(over, default=0.0)
    return f"+{worst:.1f} s" if worst > 0 else "none"


def write(data: dict, out: Path, device: str) -> None:
    rows = rows_of(data)
    if not rows:
        return
    reached, tied, searched = reach(data), reach(data, within_se=True), reach(data, trial=True)
    md = [
        f"# Budget efficiency: fit against fixed recipes at fractions of the exhaustive grid "
        f"({device})",
        "",
        "Budget: a share of the exhaustive grid's cost: every candidate x the linear-probe "
        "and fine-tune grids of `ground_truth_" + device + ".md`, and, where `exhaustive "
        "strategies` lists them, fit's other strategies (partial freeze, discriminative "
        "learning rates) on every whole network. `asked`: the share of the linear-probe and "
        "fine-tune grid the run was given when it ran (the grid gained the other strategies "
        "later, so `budget`, the share of the grid as it is now, is smaller). `val acc`: "
        "validation accuracy of the method's pick; `of exhaustive best`: that over the best "
        "validation accuracy in the grid; `best trial`: the best validation accuracy of any "
        "trial of the run (above the pick's where `fit`'s selection took a trial within one "
        "SE of it for its lower log-loss); `test acc`: the pick on the variant's test split. "
        "Every run starts with a cold feature cache. `seconds`: wall clock (the budget bounds "
        "it; a run may stop early when its trials are done).",
        "",
        "| variant | exhaustive strategies | exhaustive s | exhaustive best | validation images "
        "| fit reaches 99 % at | fit within one SE at | a fit trial reaches 99 % at "
        "| fit past its budget, at most |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {v} | {', '.join(e.get('exhaustive_strategies', []))} | "
            f"{round(e['exhaustive_seconds'])}{_missing(e)} | {e['exhaustive_best']} | "
            f"{e['val_images']} | {reached[v]} | {tied[v]} | {searched[v]} | {overrun(e)} |"
            for v, e in sorted(data["variants"].items())
        ],
        "",
        "One SE: the binomial standard error of the best validation accuracy, "
        "sqrt(p (1 - p) / n); within it `fit`'s own selection counts trials as tied "
        "from 15 training images per class (autotransfer/search/selection.py). On a small "
        "validation split 99 % is less than one image.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        *_rank_share_section(data),
        "Machine: " + ", ".join(f"{k} {v}" for k, v in (data.get("machine") or {}).items()),
        "",
        f"Reproduce: `python benchmarks/budget_efficiency.py --device {device}`",
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    plot(data, out.with_suffix(".png"))


def _rank_share_section(data: dict) -> list[str]:
    """fit at one budget with the ranking limited to several shares of it (``rank_share``;
    1 = no limit): what scoring fewer candidates costs, and whether the budget holds."""
    rows = []
    for variant, e in sorted(data["variants"].items()):
        shares = {k: dict(v) for k, v in e.get("rank_share", {}).items()}
        for key, runs in e["runs"].items():  # the default's own rows, beside the others
            fit = runs.get("fit", {})
            if "rank_share" in fit and any(key in v for v in shares.values()):
                shares.setdefault(f"{fit['rank_share']:g}", {}).setdefault(key, fit)
        for share, runs in sorted(shares.items(), key=lambda kv: -float(kv[0])):
            for key, r in sorted(runs.items(), key=lambda kv: float(kv[0])):
                rows.append(
                    {
                        "variant": variant,
                        "budget": f"{budget_share(e, r):.1%}",
                        "asked": f"{float(key):.0%}",
                        "budget s": round(r["budget_seconds"]),
                        "rank_share": share,
                        "val acc": r["val"],
                        "of exhaustive best": round(r["val"] / e["exhaustive_best"], 3),
                        "pick": r["pick"],
                        "trials": r["trials"],
                        "seconds": r["seconds"],
                        "commit": r.get("commit", ""),
                    }
                )
    if not rows:
        return []
    return [
        "## How much of the budget the ranking may take",
        "",
        "`fit` with `rank_share`, the most of the time budget the ranking may spend (1: no "
        "limit); the engine default's rows are those of the table above. Candidates are "
        "scored cached first, then by ImageNet top-1; those not reached in time are left out "
        "of the shortlist. Reproduce a row: `--rank-share S --fractions F`.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
    ]


def plot(data: dict, path: Path) -> None:

    variants = sorted(data["variants"])
    fig, axes = subplots(1, len(variants), figsize=(4.2 * len(variants), 3.6), squeeze=False)
    for ax, v in zip(axes[0], variants):
        e = data["variants"][v]
        keys = sorted(e["runs"], key=float)
        for m in METHODS:
            pts = [
                (budget_share(e, e["runs"][k][m]), e["runs"][k][m]["val"] / e["exhaustive_best"])
                for k in keys
                if m in e["runs"][k]
            ]
            if pts:
                ax.plot([100 * x for x, _ in pts], [y for _, y in pts], marker="o", label=m)
        ax.axhline(0.99, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in FRACTIONS], [f"{f:.0%}" for f in FRACTIONS])
        ax.minorticks_off()
        ax.set_xlabel("budget, % of the exhaustive grid (as it is now)")
        ax.set_ylabel("val accuracy / exhaustive best")
        ax.set_title(v, fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
