"""How large must the ranking's sample be? The sampled ranking against the full-N ranking.

For each dataset, every offline ImageNet backbone is ranked on its whole training split
(``sample_size=None``) and on stratified samples of 250, 500, 1,000, 2,000 and 5,000 images
(seed 0; a sample as large as the split is the split). The features are extracted once
for the whole split and the estimators scored on each sample's rows (what ``rank``
computes on that sample: a frozen network's features of an image do not depend on the
other images). Per sample size: Kendall's tau of the aggregate order against the full-N
order, the mean tau of each estimator's scores against its full-N scores, whether the
top backbone is the same, and the seconds of scoring (the extraction's cost is linear in
the images).

``fashion_mnist`` is measured at one or more full sizes (``--fashion-n 20000,60000``):
its features are extracted once, for the largest, and each smaller "full N" is the
stratified subset of that size (the images ``sample_split`` would draw), with its samples
drawn from within it. The largest other shared sets are measured whole. The seconds each
estimator spends on the full N are recorded per backbone.

    python benchmarks/rank_sample.py [--fashion-n 20000,60000] [--datasets fashion_mnist]
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402
from autotransfer import plugins  # noqa: E402
from autotransfer.backbones.candidates import candidate_backbones  # noqa: E402
from autotransfer.backbones.extraction import extract_all  # noqa: E402
from autotransfer.data.sample import sample_split, stratified_sample  # noqa: E402
from autotransfer.transferability.ranking import aggregate_scores  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = (250, 500, 1000, 2000, 5000, 10000, 20000)
RESOLUTION = 128  # what fit uses on a CPU for small images


def kendall(a: dict[str, float], b: dict[str, float]) -> float:
    from scipy.stats import kendalltau

    keys = [k for k in a if k in b and not (math.isnan(a[k]) or math.isnan(b[k]))]
    if len(keys) < 2:
        return float("nan")
    return float(kendalltau([a[k] for k in keys], [b[k] for k in keys]).statistic)


def probe_regret(full: dict, pick: str) -> float:
    """How many points of full-N linear-probe accuracy the sample's top backbone gives up
    against the best backbone at full N (the cost of ranking on the sample)."""
    probe = {b: sc.get("linear_probe_cv", float("nan")) for b, sc in full.items()}
    return round(100 * (max(probe.values()) - probe[pick]), 2)


def scores_on(features, specs, ests, idx, seed=0, seconds=None):
    """Every estimator's score per backbone on the images ``idx`` (what ``rank`` computes
    on that sample: a frozen network's features of an image do not depend on the others).
    With ``seconds`` (a dict), each backbone's per-estimator seconds are put in it."""
    import dataclasses

    from autotransfer.transferability.ranking import score_backbone

    out = {}
    for spec in specs:
        fs = features[spec.id]
        sub = dataclasses.replace(
            fs,
            features=fs.features[idx],
            labels=fs.labels[idx],
            logits=None if fs.logits is None else fs.logits[idx],
            key="",  # no score cache
        )
        out[spec.id], secs = score_backbone(ests, sub, spec, seed=seed, use_cache=False)
        if seconds is not None:
            seconds[spec.id] = {k: round(v, 1) for k, v in secs.items()}
    return out


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument(
        "--fashion-n",
        default="20000,60000",
        help="fashion_mnist full sizes, comma-separated (extracted once, for the largest)",
    )
    p.add_argument("--datasets", default="fashion_mnist,notmnist_subset,aid_subset")
    p.add_argument("--out", default=str(HERE / "results" / "rank_sample_cpu"))
    p.add_argument("--cache", default=None, help="a feature cache to reuse (default: a new one)")
    args = p.parse_args(argv)
    cache = Path(args.cache or tempfile.mkdtemp(prefix="autotransfer-rank-sample-"))
    ex = autotransfer.ExtractionSettings(resolution=RESOLUTION, cache_dir=cache)
    rows, raw = [], []
    for name in args.datasets.split(","):
        ds = autotransfer.open_folder(SHARED / name, progress=False)
        full_ns = [len(ds.train)]
        if name == "fashion_mnist":
            full_ns = sorted(int(v) for v in args.fashion_n.split(","))
            ds = sample_split(ds, "train", full_ns[-1], seed=0)
        specs = candidate_backbones()
        ests = [plugins.lookup("estimators", n) for n in plugins.registered("estimators")]
        agg = [e.name for e in ests if e.needs_features]
        t0 = time.perf_counter()
        features = extract_all(ds, specs, ex, progress=False)
        extract_s = time.perf_counter() - t0
        all_labels = [r.label for r in ds.train]
        print(f"{name}: {len(all_labels)} images extracted in {extract_s:.0f} s", flush=True)
        for full_n in full_ns:
            # the images sample_split(..., full_n, seed=0) would have drawn
            within = stratified_sample(all_labels, full_n, seed=0)
            labels = [all_labels[i] for i in within]
            n = len(labels)
            t0 = time.perf_counter()
            est_s: dict = {}
            full = scores_on(features, specs, ests, within, seconds=est_s)
            full_s = time.perf_counter() - t0
            agg_full = aggregate_scores(full, agg)
            print(f"{name}: {n} images scored in {full_s:.0f} s: {est_s}", flush=True)
            for size in [s for s in SIZES if s < n]:
                idx = within[stratified_sample(labels, size, seed=0)]
                t0 = time.perf_counter()
                sc = scores_on(features, specs, ests, idx)
                secs = time.perf_counter() - t0
                agg_s = aggregate_scores(sc, agg)
                taus = [
                    kendall({b: sc[b][e] for b in sc}, {b: full[b][e] for b in full}) for e in agg
                ]
                best = max(agg_s, key=lambda b: agg_s[b])
                row = {
                    "dataset": name,
                    "train images": n,
                    "sample": size,
                    "tau (aggregate)": round(kendall(agg_s, agg_full), 3),
                    "tau (estimators, mean)": round(float(np.nanmean(taus)), 3),
                    "same top-1": best == max(agg_full, key=lambda b: agg_full[b]),
                    "regret (probe points)": probe_regret(full, best),
                    "scoring s (sample)": round(secs, 1),
                    "scoring s (full N)": round(full_s, 1),
                }
                print(row, flush=True)
                rows.append(row)
                raw.append({**row, "aggregate": agg_s, "scores": sc})
            raw.append(
                {
                    "dataset": name,
                    "train images": n,
                    "sample": None,
                    "extract s (largest N)": round(extract_s, 1),
                    "estimator s": est_s,
                    "aggregate": agg_full,
                    "scores": full,
                }
            )
    info = machine_info()
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": raw}, indent=2))
    text = [
        "# The ranking on a sample against the full-N ranking",
        "",
        f"Machine: {info['machine']} ({info['cpu_cores']} cores, {info['device']}), commit "
        f"{info['commit']}, {info['date']}. Resolution {RESOLUTION} px, every offline "
        "backbone, every estimator; `python benchmarks/rank_sample.py`.",
        "",
        markdown_table(rows, list(rows[0]) if rows else []),
    ]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
