"""Which finished trial should a search keep? The engine's rule (``search.selection``:
the lowest validation log-loss among the trials within one binomial standard error of the
best validation accuracy, or only among exact equals below ``FEW_PER_CLASS`` training
images per class) against plain best accuracy, judged on the test split.

The trials are the ground truth's configurations (``ground_truth.py``: a linear probe per
C and a full fine-tune per learning rate, for every ImageNet candidate, and fit's other
strategies at their defaults on the whole networks where measured; the random control
left out) that carry their kept weights' validation accuracy and log-loss as a
trial scores them, and their test accuracy. For each variant a search is replayed: ``k``
of its trials drawn at random (without replacement, many times, a fixed seed), and also
all of them at once; each rule picks one trial; the pick's test accuracy is what the user
gets. Rules:

* ``best accuracy``: the highest validation accuracy (equals: the mean of their test
  accuracies, as a random order of trials would give on average);
* ``best accuracy, log-loss breaks ties``: among exact equals, the lowest log-loss;
* ``one-SE, lowest log-loss``: the engine's rule without its few-shot exception;
* ``engine``: ``search.selection.ranked`` on the trials as Optuna trials carrying the
  variant's training images per class, so the engine's own code decides;
* ``lowest log-loss``: accuracy ignored.

Per variant, rule and ``k``: the mean test accuracy of the pick, the mean regret (the best
test accuracy among the drawn trials less the pick's) and, for the engine's rule, how
often its pick is better and worse on test than best accuracy's. The replay varies which
trials a search ran, not the validation split, which is fixed per variant.

    python benchmarks/selection_rules.py [--device cpu] [--draws 2000]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from ground_truth import CONTROL, short  # noqa: E402
from ground_truth import load as load_truth  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SIZES = (3, 5, 8, None)  # None: every trial of the variant
ENGINE = "engine"
ONE_SE = "one-SE, lowest log-loss"
ACCURACY = "best accuracy"
RULES = (ACCURACY, "best accuracy, log-loss breaks ties", ONE_SE, ENGINE, "lowest log-loss")


def trials_of(cells: dict) -> list[dict]:
    """The variant's configurations that carry what a replay needs, as trials."""
    out = []
    for backbone, cell in sorted(cells.items()):
        if backbone == CONTROL:
            continue
        configs = [
            (f"{method} {param}", v)
            for method in ("linear_probe", "finetune")
            for param, v in sorted(cell[method].items())
        ]
        # fit's other strategies at their defaults, where measured (whole networks)
        configs += [(name, v) for name, v in sorted(cell.get("strategies", {}).items())]
        for config, v in configs:
            if v.get("val_log_loss") is None or v.get("test_accuracy") is None:
                continue
            out.append(
                {
                    "trial": f"{short(backbone)} {config}",
                    "val": v.get("val_scored_accuracy", v["val_accuracy"]),
                    "loss": v["val_log_loss"],
                    "test": v["test_accuracy"],
                }
            )
    return out


def frozen(trials: list[dict], n_val: int, per_class: float | None) -> list:
    """The trials as complete Optuna trials, with what the engine's rule reads (the
    training images per class left out when None, as in a study made before it)."""
    import optuna

    from autotransfer.search.selection import PER_CLASS

    attrs = {} if per_class is None else {PER_CLASS: per_class}
    return [
        optuna.trial.FrozenTrial(
            number=i,
            trial_id=i,
            state=optuna.trial.TrialState.COMPLETE,
            value=t["val"],
            datetime_start=None,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={"metrics": {"num_images": n_val, "log_loss": t["loss"]}, **attrs},
            system_attrs={},
            intermediate_values={},
        )
        for i, t in enumerate(trials)
    ]


def picks(trials: list[dict], n_val: int, per_class: float) -> dict[str, float]:
    """Each rule's pick among ``trials``: the test accuracy the user gets."""
    from autotransfer.search.selection import ranked

    top = max(t["val"] for t in trials)
    equals = [t for t in trials if t["val"] == top]
    one_se = ranked(frozen(trials, n_val, None))[0].number
    engine = ranked(frozen(trials, n_val, per_class))[0].number
    return {
        ACCURACY: float(np.mean([t["test"] for t in equals])),
        "best accuracy, log-loss breaks ties": min(equals, key=lambda t: t["loss"])["test"],
        ONE_SE: trials[one_se]["test"],
        ENGINE: trials[engine]["test"],
        "lowest log-loss": min(trials, key=lambda t: t["loss"])["test"],
    }


def replay(
    trials: list[dict], n_val: int, per_class: float, k: int | None, draws: int, seed: int
) -> dict:
    """The rules over ``draws`` random searches of ``k`` trials (all of them when None)."""
    rng = np.random.default_rng(seed)
    sets = (
        [list(range(len(trials)))]
        if k is None or k >= len(trials)
        else [rng.choice(len(trials), size=k, replace=False).tolist() for _ in range(draws)]
    )
    got = {r: [] for r in RULES}
    regret = {r: [] for r in RULES}
    for idx in sets:
        drawn = [trials[i] for i in idx]
        best = max(t["test"] for t in drawn)
        for rule, test in picks(drawn, n_val, per_class).items():
            got[rule].append(test)
            regret[rule].append(best - test)
    engine, acc = np.array(got[ENGINE]), np.array(got[ACCURACY])
    return {
        "searches": len(sets),
        "test": {r: round(float(np.mean(v)), 4) for r, v in got.items()},
        "regret": {r: round(float(np.mean(v)), 4) for r, v in regret.items()},
        "engine better": round(float(np.mean(engine > acc + 1e-9)), 3),
        "engine worse": round(float(np.mean(engine < acc - 1e-9)), 3),
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--device", default="cpu", help="whose ground truth (cpu or cuda)")
    p.add_argument("--draws", type=int, default=2000, help="random searches per variant and k")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    truth = load_truth(args.device)
    results = {}
    for variant in sorted(truth["cells"]):
        trials = trials_of(truth["cells"][variant])
        if len(trials) < 2:
            continue
        about = truth["variants"][variant]
        n_train, n_val = (int(x) for x in about["train/val/test"].split("/")[:2])
        per_class = round(n_train / about["classes"], 2)
        results[variant] = {
            "trials": len(trials),
            "val images": n_val,
            "train images per class": per_class,
            "by k": {
                str(k or "all"): replay(trials, n_val, per_class, k, args.draws, args.seed)
                for k in SIZES
            },
        }
        print(variant, len(trials), "trials", flush=True)
    if not results:
        raise SystemExit(
            f"No cell of results/ground_truth_{args.device}.json has validation log-losses; "
            "measure cells with benchmarks/ground_truth.py (--again for old ones) first."
        )
    data = {
        "machine": machine_info(),
        "draws": args.draws,
        "seed": args.seed,
        "rules": list(RULES),
        "variants": results,
        "mean": means(results),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"selection_rules_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1, sort_keys=True))
    write_markdown(data, stem.with_suffix(".md"), args.device)
    plot(data, stem.with_suffix(".png"))
    print(stem.with_suffix(".md").read_text())
    return 0


REGIMES = {
    "all variants": lambda v: True,
    "VTAB-1k-style": lambda v: v.endswith("/vtab1k"),
    "few-shot": lambda v: v.endswith("shot"),
}


def means(results: dict) -> dict:
    """Per regime (``REGIMES``) and k: each rule's test accuracy and regret averaged over
    the variants, and on how many the engine's rule beats best accuracy on mean test
    accuracy (and loses)."""
    out = {}
    for regime, member in REGIMES.items():
        chosen = {v: r for v, r in results.items() if member(v)}
        if chosen:
            out[regime] = _means(chosen)
    return out


def _means(results: dict) -> dict:
    out = {}
    for k in (str(k or "all") for k in SIZES):
        rows = [r["by k"][k] for r in results.values()]
        out[k] = {
            "test": {
                rule: round(float(np.mean([r["test"][rule] for r in rows])), 4) for rule in RULES
            },
            "regret": {
                rule: round(float(np.mean([r["regret"][rule] for r in rows])), 4) for rule in RULES
            },
            # per rule: on how many variants it beats best accuracy (and loses)
            "variants better / worse": {
                rule: [
                    int(sum(r["test"][rule] - r["test"][ACCURACY] > 1e-9 for r in rows)),
                    int(sum(r["test"][rule] - r["test"][ACCURACY] < -1e-9 for r in rows)),
                ]
                for rule in RULES
                if rule != ACCURACY
            },
            "variants": len(rows),
        }
    return out


def write_markdown(data: dict, path: Path, device: str) -> None:
    rows = []
    for regime, by_k in data["mean"].items():
        for k, m in by_k.items():
            for rule in RULES:
                rows.append(
                    {
                        "variants": f"{regime} ({m['variants']})",
                        "trials per search": k,
                        "rule": rule,
                        "mean test": m["test"][rule],
                        "mean regret": m["regret"][rule],
                        "variants better / worse than best accuracy": (
                            " / ".join(map(str, m["variants better / worse"][rule]))
                            if rule != ACCURACY
                            else ""
                        ),
                    }
                )
    per = []
    for variant, r in data["variants"].items():
        for k, x in r["by k"].items():
            per.append(
                {
                    "variant": variant,
                    "trials": r["trials"],
                    "val images": r["val images"],
                    "train per class": r["train images per class"],
                    "k": k,
                    "best accuracy: test": x["test"][ACCURACY],
                    "one-SE: test": x["test"][ONE_SE],
                    "engine: test": x["test"][ENGINE],
                    "log-loss breaks ties: test": x["test"]["best accuracy, log-loss breaks ties"],
                    "lowest log-loss: test": x["test"]["lowest log-loss"],
                    "engine better / worse": f"{x['engine better']} / {x['engine worse']}",
                }
            )
    md = [
        f"# Selection rules replayed on the ground truth's trials ({device})",
        "",
        "Each variant's ground-truth configurations (linear probe per C, fine-tune per lr, "
        "every candidate that has validation log-losses, and partial freeze and "
        "discriminative learning rates at their defaults on the whole networks where "
        "measured; no random control) are trials; "
        f"a search of k of them is drawn {data['draws']} times (seed {data['seed']}), or "
        "all of them once (`all`). Each rule picks one trial; `test` is the pick's test "
        "accuracy, `regret` the best test accuracy among the drawn trials less the "
        "pick's. `engine` is `search.selection.ranked` itself. The validation split is "
        "fixed per variant: the replay varies which trials ran.",
        "",
        "## Mean over variants, all and by regime",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        "`variants better / worse than best accuracy`: on how many variants the rule has "
        "the higher (lower) mean test accuracy than best accuracy.",
        "",
        "## Per variant",
        "",
        markdown_table(per, list(per[0])),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in data["machine"].items()),
        "",
        f"Reproduce: `python benchmarks/selection_rules.py --device {device}` (reads "
        f"`ground_truth_{device}.json`; cells need `ground_truth.py`'s log-losses).",
    ]
    path.write_text("\n".join(md) + "\n")


def plot(data: dict, path: Path) -> None:

    mean = data["mean"]["all variants"]
    ks = list(mean)
    fig, (a, b) = subplots(1, 2, figsize=(12, 4.2))
    for rule in RULES:
        a.plot(ks, [mean[k]["regret"][rule] for k in ks], marker="o", label=rule)
    a.set_xlabel("trials per search")
    a.set_ylabel("mean test regret of the pick")
    a.set_title("Mean over variants (lower is better)")
    a.legend(fontsize=8)
    variants = list(data["variants"])
    for k in ks:
        diff = [
            data["variants"][v]["by k"][k]["test"][ENGINE]
            - data["variants"][v]["by k"][k]["test"][ACCURACY]
            for v in variants
        ]
        b.plot(range(len(variants)), diff, marker="o", linestyle="none", label=f"k={k}")
    b.axhline(0, color="grey", linewidth=0.8)
    b.set_xticks(range(len(variants)), variants, rotation=40, ha="right", fontsize=8)
    b.set_ylabel("engine's pick less best accuracy's (test)")
    b.set_title("Per variant (above 0: the engine's rule is better)")
    b.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
