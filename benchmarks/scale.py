"""`fit` at the sizes users bring: its budget, memory and answer as N grows.

On ``../shared/datasets/fashion_mnist`` (real 28 px greyscale photos, 60,000 train /
10,000 test), for N = 1,000, 5,000, 20,000 and 60,000 stratified training images (seed 0;
a fifth of them carved out for validation, as ``fit`` does), each ``fit`` runs with a
10-minute budget in a process of its own, and is scored on the whole 10,000-image test
split inside its budget. Per N: the wall seconds of scanning, ranking, the search and the
final scoring, the peak RSS, the overrun of the budget, the candidates ranked, the pick
and its test accuracy.

Then, at 60,000, a careful engineer's hand-made baseline with the same 10 minutes: a
linear probe (scikit-learn's logistic regression on standardised pooled features) of
the fastest offline backbone at the same resolution, on as many training images as
the time allows after the test split's features.

    python benchmarks/scale.py [--sizes 1000,5000,20000,60000] [--budget 600]
    python benchmarks/scale.py --baseline-only
    python benchmarks/scale.py --render          # the table and plot again, from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import SHARED  # noqa: E402

HERE = Path(__file__).resolve().parent
FASHION = SHARED / "fashion_mnist"
SIZES = (1000, 5000, 20000, 60000)
OFFLINE = 4  # the offline ImageNet backbones of a `make install`


def files(split: str) -> tuple[list[str], list[int], list[str]]:
    """Paths, labels and class names of one of fashion_mnist's split folders, sorted."""
    classes = sorted(d.name for d in (FASHION / split).iterdir() if d.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        names = sorted(e.name for e in os.scandir(FASHION / split / c))
        paths += [str(FASHION / split / c / n) for n in names]
        labels += [i] * len(names)
    return paths, labels, classes


def make_folder(n: int, dest: Path, test_n: int | None = None) -> Path:
    """A folder as a user brings it: ``train/<class>/`` with ``n`` stratified images of
    fashion_mnist's train split (seed 0) and ``test/<class>/`` with all of its test split,
    as symbolic links to the real files (``fit`` carves a fifth of train for validation)."""
    from autotransfer.data.sample import stratified_sample

    for split, take in (("train", n), ("test", test_n)):
        paths, labels, classes = files(split)
        idx = range(len(paths)) if take is None else stratified_sample(labels, take, seed=0)
        for i in idx:
            link = dest / split / classes[labels[i]] / Path(paths[i]).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(paths[i])
    return dest


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def one_fit(n: int, budget: float, out: Path, test_n: int | None = None, seed: int = 0) -> None:
    """Run in a child process: one fit, its figures written to ``out`` as JSON."""
    import logging

    import autotransfer

    tmp = Path(tempfile.mkdtemp(prefix=f"scale-{n}-"))
    log_file = tmp / "fit.log"
    logging.basicConfig(
        level=logging.INFO, filename=log_file, format="%(asctime)s %(name)s %(message)s"
    )
    print(f"N={n}: log in {log_file}", flush=True)
    folder = make_folder(n, tmp / "data", test_n)
    start = time.perf_counter()
    result = autotransfer.fit(str(folder), time_budget=budget, run_dir=str(tmp / "run"), seed=seed)
    wall = time.perf_counter() - start
    ds = autotransfer.open_folder(folder, progress=False)  # from the scan cache
    ranking = result.ranking
    record = {
        "N": n,
        "seed": seed,
        "train": len(ds.train),
        "val": len(ds.val),
        "test": len(ds.test),
        "budget_s": budget,
        "wall_s": round(wall, 1),
        "overrun_pct": round(100 * (wall - budget) / budget, 1),
        "phases": result.phases,
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "ranked": len(ranking.rows) if ranking else 0,
        "ranked_with_features": sum(1 for r in ranking.rows if r.images) if ranking else 0,
        "rank_images": ranking.images if ranking else 0,
        "skipped": dict(ranking.skipped) if ranking else {},
        "trials": len(result.leaderboard),
        "complete": sum(1 for r in result.leaderboard if r.state == "complete"),
        "pick": f"{result.best.strategy} on {result.best.source}",
        "pick_info": result.best.info,
        "verdict": None if result.verdict is None else result.verdict.to_dict(),
        "ensemble": None if result.ensemble is None else result.ensemble.to_dict(),
        "refit": result.refit,
        "flip_tta": result.flip_tta,
        "val_accuracy": result.val_metrics.get("accuracy"),
        "val_images": result.val_metrics.get("num_images"),
        "test_accuracy": (result.test_metrics or {}).get("accuracy"),
        "leaderboard": [r.to_dict() for r in result.leaderboard],
    }
    out.write_text(json.dumps(record, indent=2, default=str))


def baseline(budget: float, out: Path, resolution: int = 128) -> None:
    """A careful engineer's linear probe in ``budget`` seconds, on the whole train folder."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from autotransfer.backbones.features import extract_features
    from autotransfer.backbones.load import resolve_backbones
    from autotransfer.data.sample import stratified_sample, with_split
    from autotransfer.data.types import ImageDataset, ImageRecord

    start = time.perf_counter()
    # what an engineer's ImageFolder reads: paths and labels, no scan of the files
    classes = files("train")[2]

    def records(split):
        paths, labels, _ = files(split)
        return tuple(ImageRecord(p, y, p, 28, 28, "L") for p, y in zip(paths, labels))

    pool = records("train")  # an engineer trains on every labelled image
    test_records = records("test")
    ds = ImageDataset(str(FASHION), "split_folders", tuple(classes), pool, (), test_records)
    spec = resolve_backbones(["package:mobilenetv2_100"])[0]  # the fastest offline one
    cache = tempfile.mkdtemp(prefix="scale-baseline-")
    ex = dict(resolution=resolution, cache_dir=cache, use_cache=False)
    test = extract_features(ds, spec, split="test", **ex)
    spent = time.perf_counter() - start
    rate = len(test) / test.seconds
    # leave a fifth of what is left for the logistic regression
    n_train = int(min(len(pool), 0.8 * (budget - spent) * rate))
    idx = stratified_sample([r.label for r in pool], n_train, seed=0)
    tr = extract_features(with_split(ds, "train", [pool[i] for i in idx]), spec, **ex)
    scaler = StandardScaler().fit(tr.features)
    clf = LogisticRegression(C=0.1, max_iter=1000).fit(scaler.transform(tr.features), tr.labels)
    acc = float(np.mean(clf.predict(scaler.transform(test.features)) == test.labels))
    wall = time.perf_counter() - start
    out.write_text(
        json.dumps(
            {
                "what": f"linear probe of {spec.id} at {resolution} px (C=0.1)",
                "train_images": len(tr),
                "test_accuracy": round(acc, 4),
                "wall_s": round(wall, 1),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "images_per_s": round(rate, 1),
            },
            indent=2,
        )
    )


def plot(rows: list[dict], path: Path) -> None:

    ns = [r["N"] for r in rows]
    fig, axes = subplots(1, 3, figsize=(13, 3.8))
    phases = ("scan", "rank", "search", "final_scoring", "close")
    bottom = [0.0] * len(rows)
    for ph in phases:
        vals = [r["phases"].get(ph, 0.0) for r in rows]
        axes[0].bar([str(n) for n in ns], vals, bottom=bottom, label=ph)
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[0].axhline(rows[0]["budget_s"], color="k", ls="--", lw=1, label="budget")
    axes[0].set(title="wall seconds by step", xlabel="training images (N)")
    axes[0].legend(fontsize=7)
    axes[1].plot(ns, [r["peak_rss_gb"] for r in rows], "o-")
    axes[1].set(title="peak RSS (GB)", xscale="log", xlabel="N")
    axes[2].plot(ns, [r["test_accuracy"] for r in rows], "o-", label="fit")
    axes[2].set(title="test accuracy (10,000 images)", xscale="log", xlabel="N")
    save_figure(fig, path)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--budget", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0, help="fit's seed (the folder's sample: 0)")
    p.add_argument("--baseline-only", action="store_true")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--render", action="store_true", help="only the table and plot of --out")
    p.add_argument("--test-n", type=int, default=None, help="test images (a dry run: fewer)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(HERE / "results" / "scale_cpu"))
    args = p.parse_args(argv)
    if args.one is not None:
        one_fit(args.one, args.budget, Path(args.json), args.test_n, args.seed)
        return 0
    if args.baseline:
        baseline(args.budget, Path(args.json))
        return 0
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    env = {**os.environ, "AUTOTRANSFER_CACHE": str(tmp / "cache")}  # a cold cache per run
    rows = []
    sizes = [] if args.baseline_only or args.render else [int(x) for x in args.sizes.split(",")]
    for n in sizes:
        js = tmp / f"fit_{n}.json"
        env["AUTOTRANSFER_CACHE"] = str(tmp / f"cache_{n}")
        cmd = [sys.executable, __file__, "--one", str(n), "--budget", str(args.budget)]
        cmd += ["--seed", str(args.seed)]
        if args.test_n:
            cmd += ["--test-n", str(args.test_n)]
        subprocess.run([*cmd, "--json", str(js)], env=env, check=True)
        rows.append(json.loads(js.read_text()))
        r = rows[-1]
        print(
            f"N={n}: {r['wall_s']} s ({r['overrun_pct']:+} %), rss {r['peak_rss_gb']} GB, "
            f"ranked {r['ranked_with_features']}, pick {r['pick']}, test {r['test_accuracy']}",
            flush=True,
        )
    base = None
    if not (args.no_baseline or args.render):
        js = tmp / "baseline.json"
        env["AUTOTRANSFER_CACHE"] = str(tmp / "cache_baseline")
        cmd = [sys.executable, __file__, "--baseline", "--budget", str(args.budget)]
        subprocess.run([*cmd, "--json", str(js)], env=env, check=True)
        base = json.loads(js.read_text())
        print("baseline:", base, flush=True)
    saved = out.with_suffix(".json")
    prev = json.loads(saved.read_text()) if saved.exists() else {}
    info = prev["machine"] if args.render else machine_info()
    rows = rows or prev.get("rows", [])
    base = base or prev.get("baseline")
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "rows": rows, "baseline": base}, indent=2, default=str)
    )
    table = [
        {
            "N": r["N"],
            "scan s": r["phases"].get("scan"),
            "rank s": r["phases"].get("rank"),
            "search s": r["phases"].get("search"),
            "final scoring s": r["phases"].get("final_scoring"),
            "close s": r["phases"].get("close"),
            "wall s": r["wall_s"],
            "overrun": f"{r['overrun_pct']:+.1f} %",
            "peak RSS GB": r["peak_rss_gb"],
            "ranked": f"{r['ranked_with_features']} of {OFFLINE} ({r['rank_images']} images)",
            "trials": f"{r['complete']}/{r['trials']}",
            "pick": r["pick"],
            "pick's train images": (r.get("pick_info") or {}).get("train_images", "all"),
            "test acc": r["test_accuracy"],
        }
        for r in rows
    ]
    text = [
        "# fit at scale: fashion_mnist, a 10-minute budget per N",
        "",
        f"Machine: {info['machine']} ({info['cpu_cores']} cores, {info['device']}), commit "
        f"{info['commit']}, {info['date']}; `python benchmarks/scale.py`. Each fit in its own "
        "process with a cold feature cache; test accuracy on all 10,000 test images, scored "
        "inside the budget.",
        "",
        markdown_table(table, list(table[0]) if table else []),
    ]
    if base:
        text += [
            "",
            f"Hand-made baseline, same budget: {base['what']} on {base['train_images']} "
            f"training images: test accuracy {base['test_accuracy']} in {base['wall_s']} s "
            f"(peak RSS {base['peak_rss_gb']} GB).",
        ]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    if rows:
        plot(rows, out.with_suffix(".png"))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
