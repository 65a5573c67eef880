"""Ground truth for the ranking benchmarks: how well each candidate backbone really
transfers to each dataset variant, measured by training it.

For every dataset variant x candidate backbone, through the engine's own strategies and
training loop (``search.objective.train_model``):

* **linear probe**: ``feature_extraction`` (logistic regression on the frozen, cached
  features) for each C of the grid, its best validation accuracy;
* **fine-tune**: ``full_finetune`` with the BiT-HyperRule recipe (SGD with momentum,
  warm-up, x0.1 steps at 30/60/90 %, zero head, no MixUp for small data) for each
  learning rate of the grid, a fixed number of optimiser steps (BiT counts steps, not
  epochs: a few-shot set gets more epochs), its best validation accuracy.

On the whole networks, fit's other built-in strategies too (``partial_freeze``,
``discriminative_lr``), each at its defaults for the same number of optimiser steps: they
are not part of the ranking's ground truth (the best of the two grids above), but the
budget benchmark's exhaustive grid counts them, since fit searches them.

Each configuration is scored on the validation split (its best epoch) and, with the
weights kept, on the test split; the kept weights' validation and test log-losses are
recorded too (``selection_rules.py`` replays a search's choice from them). The ground
truth of a cell is the test accuracy of the configuration with the best validation
accuracy over both grids (the LogME paper's protocol: the test splits here are 1.5-3x the
validation splits), and its best validation accuracy is kept beside it (the budget
benchmark compares `fit` with it). Candidates:
every ImageNet backbone available offline, each also cut after the protocol's stages,
and the random-init control.
The grid is the same for every cell. Results are cached per cell in
``benchmarks/results/ground_truth_<device>.json`` (the other benchmarks read it), so a
run that stops resumes where it was, and a later session (or a GPU) adds cells.

    python benchmarks/ground_truth.py                       # the CPU scale: vtab1k variants
    python benchmarks/ground_truth.py --variants flowers5_subset/vtab1k,aid_subset/5shot
    python benchmarks/ground_truth.py --backbones package:efficientnet_lite0 --again
    python benchmarks/ground_truth.py --render              # tables and plot from the JSON
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import add_rerun_flags, parse_quietly, parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import dataset_names, describe_split, load_variant  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FEW_SHOT = ("aid_subset", "flowers5_subset")  # the two datasets with few-shot variants
SHOTS = (1, 5, 10)

# fit's other built-in strategies, measured on the whole networks at their own defaults
# (the prior a fit enqueues) with the protocol's steps, so that the budget benchmark's
# exhaustive grid covers every strategy fit searches; not part of the ranking's ground truth
OTHER_STRATEGIES = ("partial_freeze", "discriminative_lr")

# The grid: the same for every cell. ``steps`` x ``batch_size`` training images are seen
# (capped at ``max_epochs`` passes over a tiny few-shot set).
GRID = {
    "steps": 100,
    "lrs": [0.003, 0.01],
    "Cs": [0.1, 1.0, 10.0],
    "cuts": [3],
    "seed": 0,
    "strategies": list(OTHER_STRATEGIES),
}
PROTOCOLS = {
    "cpu": {
        **GRID,
        "resolution": 128,
        "batch_size": 32,
        "max_epochs": 30,
        # on the CPU only the two cheapest backbones are cut (a GPU cuts every one)
        "cut_backbones": ["package:mobilenetv2_100", "package:efficientnet_lite0"],
    },
    # sized for a device session (15 minutes of a GPU, start included; see
    # benchmarks/device_session.sh): the flowers' VTAB-1k-style variant, 9 candidates x 5
    # configurations, took 93 s on an H200; 100 steps of 128 are 16 passes over 800 images
    "cuda": {
        **GRID,
        "resolution": 224,
        "batch_size": 128,
        "max_epochs": 100,
        "cut_backbones": None,
    },
}
CONTROL = "random:mobilenetv2_100"


def default_variants(device: str) -> list[str]:
    names = dataset_names()
    out = [f"{n}/vtab1k" for n in names]
    out += [f"{n}/{k}shot" for n in FEW_SHOT for k in SHOTS]
    if device == "cuda":
        out += names
    return out


def candidates(protocol: dict) -> list[str]:
    """Every ImageNet backbone available offline, its cuts (of ``cut_backbones`` only,
    when set), and the random control."""
    from autotransfer.backbones.candidates import candidate_backbones

    whole = [s.id for s in candidate_backbones()]
    cut = protocol["cut_backbones"] or whole
    cuts = [s.id for s in candidate_backbones(cut, cuts=protocol["cuts"]) if s.cut is not None]
    return whole + cuts + [CONTROL]


def search_run(ds, backbones: list[str], protocol: dict, device: str | None, work: Path):
    """The engine's trial state for ``ds``: the shortlist is every candidate."""
    from autotransfer.config import FitSettings
    from autotransfer.search import runner
    from autotransfer.search.plan import make_plan

    settings = FitSettings(
        time_budget=None,
        n_trials=1,
        trackers=(),
        resolution=protocol["resolution"],
        batch_size=protocol["batch_size"],
        seed=protocol["seed"],
        device=device,
        class_weights="none",
        strategies=("feature_extraction", "full_finetune", *protocol.get("strategies", ())),
    )
    # no descriptor: median side 224, no similarity, and no class weights
    plan = make_plan(ds, settings, None, backbones)
    work.mkdir(parents=True, exist_ok=True)
    _, sr = runner.prepare(work, ds, settings, plan)
    return sr


def epochs_for(num_train: int, protocol: dict) -> int:
    seen = protocol["steps"] * protocol["batch_size"]
    return int(min(protocol["max_epochs"], max(1, -(-seen // num_train))))


def _quiet(epoch, metrics):
    return None


def scored(sr, model) -> dict:
    """The kept weights' validation accuracy and log-loss as a trial scores them, and
    their test accuracy and log-loss (the selection-rule benchmark replays a search
    from them; not counted in seconds)."""

    def on(split: str) -> tuple[float, float]:
        m = model.evaluate(sr.dataset, split=split, device=str(sr.device))
        return round(float(m["accuracy"]), 4), round(float(m["log_loss"]), 4)

    # the validation accuracy as a fit's trial scores it (the kept weights, the
    # prediction path), beside the training loop's best-epoch figure
    out = dict(zip(("val_scored_accuracy", "val_log_loss"), on("val"), strict=True))
    if sr.dataset.test:
        out.update(zip(("test_accuracy", "test_log_loss"), on("test"), strict=True))
    else:
        out["test_accuracy"] = None
    return out


def measure_cell(sr, backbone: str, protocol: dict) -> dict:
    """Train every grid configuration of one backbone: validation accuracy (best epoch),
    test accuracy of the kept weights, seconds."""
    from autotransfer.search.objective import train_model

    cell: dict = {"linear_probe": {}, "finetune": {}}
    # the forward passes' time when they were computed (also when served from the cache)
    cell["extract_seconds"] = round(
        sum(sr.features(backbone, split).seconds for split in ("train", "val")), 2
    )
    for i, C in enumerate(protocol["Cs"]):
        t = time.perf_counter()
        model, out = train_model(sr, backbone, "feature_extraction", {"C": C}, i, _quiet)
        seconds = time.perf_counter() - t
        cell["linear_probe"][str(C)] = {
            "val_accuracy": round(out.val_accuracy, 4),
            **scored(sr, model),
            "seconds": round(seconds, 2),
        }
    for i, lr in enumerate(protocol["lrs"]):
        params = {"lr": lr}
        cell["finetune"][str(lr)] = train_config(
            sr, backbone, "full_finetune", params, protocol, 100 + i
        )
    if is_whole(backbone):
        measure_strategies(sr, backbone, protocol, cell)
    summarise(cell)
    return cell


def is_whole(backbone: str) -> bool:
    """A whole ImageNet network: neither a cut nor a random-init control (the candidates the
    ImageNet-top-1 prior can score)."""
    return "@" not in backbone and not backbone.startswith("random:")


def measure_strategies(sr, backbone: str, protocol: dict, cell: dict) -> None:
    """fit's other strategies (``protocol["strategies"]``) at their defaults, with the
    protocol's number of optimiser steps, into ``cell["strategies"]``."""
    got = cell.setdefault("strategies", {})
    for i, name in enumerate(protocol.get("strategies", ())):
        if name not in got:
            got[name] = train_config(sr, backbone, name, {}, protocol, 200 + i)


def train_config(
    sr, backbone: str, strategy: str, params: dict, protocol: dict, number: int
) -> dict:
    """One configuration of ``strategy`` (its defaults updated by ``params``) for the
    protocol's epochs: validation accuracy (best epoch), the kept weights' scores, seconds."""
    from autotransfer.search.objective import train_model

    epochs = epochs_for(sr.search.num_train, protocol)
    params = {**sr.strategies[strategy].defaults(search=sr.search), **params, "epochs": epochs}
    t = time.perf_counter()
    model, out = train_model(sr, backbone, strategy, params, number, _quiet)
    seconds = time.perf_counter() - t
    return {
        "val_accuracy": round(out.val_accuracy, 4),
        **scored(sr, model),
        "seconds": round(seconds, 2),
        "epochs": epochs,
        "epochs_run": out.info.get("epochs_run"),
    }


def selected(grid: dict) -> dict:
    """The configuration with the best validation accuracy (the first of equals)."""
    return max(grid.values(), key=lambda v: v["val_accuracy"])


def summarise(cell: dict) -> None:
    """Best validation accuracy per method and overall, and the test accuracy of the
    configuration validation selects (the protocol of the LogME paper)."""
    lp, ft = selected(cell["linear_probe"]), selected(cell["finetune"])
    cell["linear_probe_best"] = lp["val_accuracy"]
    cell["finetune_best"] = ft["val_accuracy"]
    cell["best"] = max(lp["val_accuracy"], ft["val_accuracy"])
    cell["linear_probe_test"] = lp["test_accuracy"]
    cell["finetune_test"] = ft["test_accuracy"]
    cell["test"] = (lp if lp["val_accuracy"] >= ft["val_accuracy"] else ft)["test_accuracy"]
    # what a user pays for the whole grid: feature pass, probes and fine-tunes
    cell["seconds"] = round(
        cell["extract_seconds"]
        + sum(v["seconds"] for part in ("linear_probe", "finetune") for v in cell[part].values()),
        2,
    )
    # with fit's other strategies (whole networks): the budget benchmark's exhaustive grid,
    # and the test accuracy validation selects over every strategy
    others = list(cell.get("strategies", {}).values())
    pick = max([lp, ft, *others], key=lambda v: v["val_accuracy"])  # the first of equals
    cell["all_best"] = pick["val_accuracy"]
    cell["all_test"] = pick["test_accuracy"]
    cell["all_seconds"] = round(cell["seconds"] + sum(v["seconds"] for v in others), 2)


def load(device: str) -> dict:
    """The cached ground truth of ``device`` ("cpu" or "cuda"): protocol, cells, machine."""
    path = RESULTS / f"ground_truth_{device}.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"protocol": PROTOCOLS[device], "cells": {}, "variants": {}, "machine": None}


def save(data: dict, device: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"ground_truth_{device}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--variants", default=None, help="comma-separated (default: all)")
    p.add_argument("--backbones", default=None, help="comma-separated (default: all candidates)")
    add_rerun_flags(
        p,
        again="measure the named cells again (default: only cells not measured)",
        render="only write the tables and plot",
    )
    args = parse_quietly(p, argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = load(device)
    protocol = data["protocol"]
    if {**protocol, "strategies": PROTOCOLS[device]["strategies"]} == PROTOCOLS[device]:
        protocol = data["protocol"] = PROTOCOLS[device]  # measured before the strategies
    if protocol != PROTOCOLS[device]:
        raise SystemExit(
            f"results/ground_truth_{device}.json was measured with another grid; move it "
            "away to start again."
        )
    if not args.render:
        variants = args.variants.split(",") if args.variants else default_variants(device)
        backbones = args.backbones.split(",") if args.backbones else candidates(protocol)
        work = Path(tempfile.mkdtemp(prefix="autotransfer-gt-"))
        for variant in variants:
            done = data["cells"].get(variant, {})
            todo = [b for b in backbones if args.again or b not in done]
            # cells measured before the protocol had fit's other strategies: only those
            partial = [
                b
                for b in backbones
                if b not in todo
                and is_whole(b)
                and set(protocol["strategies"]) - set(done[b].get("strategies", {}))
            ]
            if not todo and not partial:
                continue
            ds = load_variant(variant)
            data["variants"][variant] = {
                "train/val/test": describe_split(ds),
                "classes": len(ds.classes),
                "epochs": epochs_for(len(ds.train), protocol),
            }
            for b in partial:
                cell = done[b]
                place = work / variant.replace("/", "_") / b.replace(":", "_")
                measure_strategies(search_run(ds, [b], protocol, device, place), b, protocol, cell)
                summarise(cell)
                cell["strategies_commit"] = machine_info()["commit"]
                save(data, device)
                print(
                    json.dumps({"variant": variant, "backbone": b, **_strategies_line(cell)}),
                    flush=True,
                )
            for b in todo:
                # a search run of its own: a cut's features come from its own forward
                # pass, not its network's, so a cell's seconds are what it costs alone
                place = work / variant.replace("/", "_") / b.replace(":", "_")
                cell = measure_cell(search_run(ds, [b], protocol, device, place), b, protocol)
                cell["commit"] = machine_info()["commit"]
                data["cells"].setdefault(variant, {})[b] = cell
                data["machine"] = machine_info()
                save(data, device)
                print(
                    json.dumps(
                        {
                            "variant": variant,
                            "backbone": b,
                            "best": cell["best"],
                            "lp": cell["linear_probe_best"],
                            "ft": cell["finetune_best"],
                            "test": cell["test"],
                            "s": cell["seconds"],
                            **_strategies_line(cell),
                        }
                    ),
                    flush=True,
                )
    write_report(data, device)
    return 0


def _strategies_line(cell: dict) -> dict:
    got = cell.get("strategies", {})
    return {
        **{n: v["val_accuracy"] for n, v in got.items()},
        **(
            {"s other strategies": round(sum(v["seconds"] for v in got.values()), 1)} if got else {}
        ),
    }


def short(backbone: str) -> str:
    """The id without its weight source, but for the random control, which keeps it."""
    return backbone if backbone.startswith("random:") else backbone.split(":", 1)[-1]


def write_report(data: dict, device: str) -> None:
    cells = data["cells"]
    if not cells:
        return
    for by_backbone in cells.values():  # the summaries as this code makes them
        for cell in by_backbone.values():
            summarise(cell)
    save(data, device)

    def best_key(grid: dict) -> str:
        return max(grid, key=lambda k: grid[k]["val_accuracy"])

    proto = data["protocol"]
    rows = []
    for variant in sorted(cells):
        v = data["variants"].get(variant, {})
        for b, c in sorted(cells[variant].items(), key=lambda kv: -kv[1]["best"]):
            rows.append(
                {
                    "variant": variant,
                    "train/val/test": v.get("train/val/test", ""),
                    "backbone": short(b),
                    "linear probe": c["linear_probe_best"],
                    "best C": best_key(c["linear_probe"]),
                    "fine-tune": c["finetune_best"],
                    "best lr": best_key(c["finetune"]),
                    "ground truth (val)": c["best"],
                    "test (val-selected)": c["test"],
                    **{
                        name.replace("_", " "): c.get("strategies", {})
                        .get(name, {})
                        .get("val_accuracy", "")
                        for name in proto.get("strategies", ())
                    },
                    "best of all (val)": c.get("all_best", c["best"]),
                    "epochs": v.get("epochs", ""),
                    "seconds": round(c["seconds"]),
                    "seconds with all": round(c.get("all_seconds", c["seconds"])),
                }
            )
    md = [
        f"# Ground truth: each candidate trained on each dataset variant ({device})",
        "",
        "Validation accuracy except in `test (val-selected)`. `linear probe`: logistic "
        "regression on frozen features, best "
        f"over C in {proto['Cs']}. `fine-tune`: full fine-tune with the BiT-HyperRule recipe "
        f"(SGD momentum 0.9, warm-up, x0.1 steps, zero head), best over lr in {proto['lrs']}, "
        f"{proto['steps']} steps of {proto['batch_size']} images (at most "
        f"{proto['max_epochs']} epochs), {proto['resolution']} px, seed {proto['seed']}. "
        "`ground truth (val)` is the better of the two; `test (val-selected)` the test "
        "accuracy of the configuration validation selects (the LogME paper's protocol; the "
        "test splits are larger than the validation splits here). `@3`: the backbone cut "
        "after its stage 3; `random:`: the random-init control. `seconds`: the cell's "
        "feature pass and trainings (test scoring not counted). "
        + (
            f"{', '.join(f'`{n}`' for n in proto['strategies'])}: fit's other built-in "
            "strategies on the whole networks, each at its defaults (the prior a fit "
            "enqueues) for the same number of optimiser steps, validation accuracy of its "
            "best epoch; `best of all (val)` and `seconds with all` add them: the budget "
            "benchmark's exhaustive grid (the ranking's ground truth stays the first two)."
            if proto.get("strategies")
            else ""
        ),
        "",
        markdown_table(rows, list(rows[0])),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in (data["machine"] or {}).items()),
        "",
        "Reproduce: `python benchmarks/ground_truth.py"
        + (" --device cpu" if device == "cpu" else "")
        + "` (resumes; cells are cached in "
        f"`ground_truth_{device}.json`).",
    ]
    (RESULTS / f"ground_truth_{device}.md").write_text("\n".join(md) + "\n")
    plot(data, RESULTS / f"ground_truth_{device}.png")


def plot(data: dict, path: Path) -> None:
    import numpy as np

    cells = data["cells"]
    variants = sorted(cells)
    backbones = sorted({b for v in cells.values() for b in v})
    grid = np.full((len(variants), len(backbones)), np.nan)
    for i, v in enumerate(variants):
        for j, b in enumerate(backbones):
            if b in cells[v]:
                grid[i, j] = cells[v][b]["test"]
    fig, ax = subplots(figsize=(1.1 * len(backbones) + 3, 0.45 * len(variants) + 2))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(backbones)), [short(b) for b in backbones], rotation=40, ha="right")
    ax.set_yticks(range(len(variants)), variants)
    for i in range(len(variants)):
        for j in range(len(backbones)):
            if grid[i, j] == grid[i, j]:
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label="test accuracy")
    ax.set_title("Ground truth: linear-probe and fine-tune grids, chosen on validation")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
