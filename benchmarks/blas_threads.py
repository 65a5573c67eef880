"""The probe fits on BLAS's default threads against one thread: seconds and the same answer.

For each dataset variant x backbone: the training split's features (the engine's own
extraction, cached), then every registered estimator that reads features and the
frozen-feature strategy's linear head (C = 0.1, standardised features) timed twice: with
BLAS on the machine's default threads (the function without its one-thread wrapper) and
as the engine runs it (``autotransfer.threads.on_one_blas_thread`` where it applies).
Median of ``--repeats`` runs; ``same`` says whether both gave the same score (or head).
Writes a Markdown table, JSON and a bar chart to benchmarks/results/.

    python benchmarks/blas_threads.py
    python benchmarks/blas_threads.py --variants aid_subset/vtab1k --backbones efficientnet_lite0
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import load_variant  # noqa: E402

from autotransfer import plugins  # noqa: E402
from autotransfer.backbones.features import extract_features  # noqa: E402
from autotransfer.backbones.load import resolve_backbones  # noqa: E402
from autotransfer.strategies.probe import fit_linear_head  # noqa: E402
from autotransfer.transferability.base import ScoringInput  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VARIANTS = ("aid_subset/vtab1k", "dtd10_subset/vtab1k", "flowers5_subset/vtab1k")
BACKBONES = ("package:efficientnet_lite0", "package:mobilenetv2_100")
HEAD = "linear head (feature_extraction, C = 0.1)"


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _head(fit, z, labels, k) -> tuple:
    return fit(z, labels, k, C=0.1)[:2]


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b))
    return bool(np.isclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def measure(variant: str, backbone: str, resolution: int, repeats: int) -> list[dict]:
    ds = load_variant(variant)
    spec = resolve_backbones([backbone])[0]
    fs = extract_features(ds, spec, split="train", resolution=resolution)
    inputs = ScoringInput(features=fs.features, labels=fs.labels, logits=fs.logits, backbone=spec)
    z = (fs.features - fs.features.mean(0)) / (fs.features.std(0) + 1e-6)
    k = len(ds.classes)
    jobs = []  # (fit, as the engine runs it, on BLAS's default threads)
    for reg in plugins.registered("estimators").values():
        e = reg.obj
        if not e.needs_features or (e.needs_logits and fs.logits is None):
            continue
        method = type(e).score
        plain = getattr(method, "__wrapped__", None)
        jobs.append(
            (e.name, partial(method, e, inputs), partial(plain, e, inputs) if plain else None)
        )
    head = (z, fs.labels, k)
    jobs.append(
        (
            HEAD,
            partial(_head, fit_linear_head, *head),
            partial(_head, fit_linear_head.__wrapped__, *head),
        )
    )
    rows = []
    for name, engine, default in jobs:
        one_thread = default is not None
        default = default or engine  # not wrapped: the engine runs it on the default threads
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_default, a = _timed(default, repeats)
            t_engine, b = _timed(engine, repeats)
        rows.append(
            {
                "variant": variant,
                "backbone": backbone.split(":")[-1],
                "images x dims": f"{fs.features.shape[0]} x {fs.features.shape[1]}",
                "classes": k,
                "fit": name,
                "one thread": "yes" if one_thread else "no",
                "default threads s": round(t_default, 3),
                "engine s": round(t_engine, 3),
                "speed-up": round(t_default / t_engine, 2) if t_engine else None,
                "same": _same(a, b),
            }
        )
        print(rows[-1], flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:

    fits = sorted({r["fit"] for r in rows})
    mean = {
        f: (
            statistics.mean(r["default threads s"] for r in rows if r["fit"] == f),
            statistics.mean(r["engine s"] for r in rows if r["fit"] == f),
        )
        for f in fits
    }
    fig, ax = subplots(figsize=(9, 4))
    x = np.arange(len(fits))
    ax.bar(x - 0.2, [mean[f][0] for f in fits], 0.4, label="BLAS default threads")
    ax.bar(x + 0.2, [mean[f][1] for f in fits], 0.4, label="as the engine runs it")
    ax.set_xticks(x, [f.split(" (")[0] for f in fits], rotation=30, ha="right")
    ax.set_ylabel("seconds (mean over variants x backbones)")
    ax.legend()
    save_figure(fig, path, dpi=120)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rows = [
        r
        for v in args.variants.split(",")
        for b in args.backbones.split(",")
        for r in measure(v, b, args.resolution, args.repeats)
    ]
    machine = machine_info()
    device = "cpu"
    out = RESULTS / f"blas_threads_{device}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=1))
    per_candidate = {}
    for r in rows:
        if r["fit"] != HEAD:
            key = (r["variant"], r["backbone"])
            d, e = per_candidate.get(key, (0.0, 0.0))
            per_candidate[key] = (d + r["default threads s"], e + r["engine s"])
    cols = [
        "variant",
        "backbone",
        "images x dims",
        "classes",
        "fit",
        "one thread",
        "default threads s",
        "engine s",
        "speed-up",
        "same",
    ]
    summary = [
        {
            "variant": v,
            "backbone": b,
            "estimators, default threads s": round(d, 2),
            "estimators, engine s": round(e, 2),
            "speed-up": round(d / e, 2),
        }
        for (v, b), (d, e) in per_candidate.items()
    ]
    md = [
        f"# Probe fits on BLAS's default threads and on one thread ({device})",
        "",
        f"Seconds (median of {args.repeats} runs) of each feature-reading estimator and "
        "of the frozen-feature strategy's linear head on the training split's features, "
        "with BLAS on the machine's default threads and as the engine runs them (`one "
        "thread`: wrapped in `autotransfer.threads.on_one_blas_thread`). `same`: both gave "
        "the same score or head.",
        "",
        "Scoring one candidate in the ranking (every estimator that reads features):",
        "",
        markdown_table(summary, list(summary[0])),
        "",
        markdown_table(rows, cols),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "Reproduce: `python benchmarks/blas_threads.py`",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(md))
    plot(rows, out.with_suffix(".png"))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
