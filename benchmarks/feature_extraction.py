"""Feature-extraction throughput against the plain model forward, and the cached second rank.

For each backbone: images/s of ``extract_features`` (decode, preprocess, forward, with its
DataLoader), images/s of the plain model forward on the very same preprocessed batches
held in memory, and their ratio (how much the data pipeline costs; 1.0 = nothing). Then
the wall time of a cold ``rank`` (empty cache) against a second ``rank`` served from the
cache. Writes a Markdown table and JSON to benchmarks/results/.

    python benchmarks/feature_extraction.py                       # defaults below
    python benchmarks/feature_extraction.py --data ../shared/datasets/hymenoptera/train \
        --resolution 224 --backbones efficientnet_lite0,mobilenetv2_100
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402
from autotransfer.backbones.features import extract_features, forward_batch  # noqa: E402
from autotransfer.backbones.inputs import ImageFiles, data_config, eval_transform, resize_side  # noqa: E402
from autotransfer.backbones.load import load_backbone, resolve_backbones  # noqa: E402

HERE = Path(__file__).resolve().parent
REPEATS = 2


def plain_forward_rate(spec, ds, resolution, batch_size, repeats=1) -> float:
    """Images/s of the model alone on preprocessed batches already in memory."""
    tf = eval_transform(data_config(spec, resolution))
    images = ImageFiles(ds.train, tf, draft=resize_side(data_config(spec, resolution)))
    batches = [
        torch.stack([images[j][0] for j in range(i, min(i + batch_size, len(images)))])
        for i in range(0, len(images), batch_size)
    ]
    model = load_backbone(spec).eval()
    with torch.inference_mode():
        forward_batch(model, batches[0][:2])  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            for x in batches:
                forward_batch(model, x)
        dt = time.perf_counter() - t0
    return repeats * len(images) / dt


def pipeline_rate(spec, ds, resolution, batch_size, cache_dir) -> tuple[float, float]:
    """Steady images/s of extract_features (from its first batch out to its last, so model
    loading and worker start-up are excluded, as they are from the plain forward), and the
    images/s of the whole call including them."""
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    fs = extract_features(
        ds,
        spec,
        resolution=resolution,
        batch_size=batch_size,
        cache_dir=cache_dir,
        use_cache=False,
        progress=lambda done, total: marks.append((time.perf_counter(), done)),
    )
    total = time.perf_counter() - t0
    (t_first, n_first), (t_last, n_last) = marks[0], marks[-1]
    return (n_last - n_first) / (t_last - t_first), len(fs) / total


def measure(data, ds, spec, res, batch_size) -> dict:
    tmp = Path(tempfile.mkdtemp())
    # best of REPEATS, alternating the two, so that a burst of load elsewhere on a shared
    # machine does not decide the ratio
    plains, pipes = [], []
    for _ in range(REPEATS):
        plains.append(plain_forward_rate(spec, ds, res, batch_size))
        pipes.append(pipeline_rate(spec, ds, res, batch_size, tmp))
    plain = max(plains)
    steady, overall = max(pipes)
    ex = autotransfer.ExtractionSettings(resolution=res, batch_size=batch_size, cache_dir=tmp)
    timings = []
    for _ in range(2):  # cold (empty cache: scan, extract, score), then served from the cache
        t0 = time.perf_counter()
        autotransfer.rank(data, backbones=[spec.id], extraction=ex, progress=False)
        timings.append(time.perf_counter() - t0)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "dataset": Path(data).parent.name if Path(data).name == "train" else Path(data).name,
        "images": len(ds.train),
        "backbone": spec.id,
        "px": res,
        "plain forward img/s": round(plain, 1),
        "extract img/s": round(steady, 1),
        "ratio": round(steady / plain, 3),
        "extract incl. start-up img/s": round(overall, 1),
        "rank cold s": round(timings[0], 2),
        "rank cached s": round(timings[1], 3),
        "cache speed-up": round(timings[0] / timings[1], 1),
    }


def main(argv=None) -> int:
    p = parser(__doc__)
    defaults = [SHARED / d / "train" for d in ("hymenoptera", "flowers5_subset", "aid_subset")]
    defaults = ",".join(str(d) for d in defaults if d.exists()) or None
    p.add_argument("--data", default=defaults, help="comma-separated folders")
    p.add_argument("--backbones", default="efficientnet_lite0,mobilenetv2_100")
    p.add_argument("--resolutions", default="128,224")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=str(HERE / "results" / "feature_extraction_cpu"))
    args = p.parse_args(argv)
    if args.data is None:
        from autotransfer.data.demo import write_digits_folder

        args.data = str(write_digits_folder(Path(tempfile.mkdtemp()) / "digits"))
    torch.manual_seed(0)
    specs = resolve_backbones(args.backbones.split(","))
    rows = []
    for data in args.data.split(","):
        ds = autotransfer.open_folder(data, progress=False)
        for res in [int(r) for r in args.resolutions.split(",")]:
            for spec in specs:
                rows.append(measure(data, ds, spec, res, args.batch_size))
                print(rows[-1], flush=True)
    info = machine_info()
    cols = list(rows[0])
    md = [
        "# Feature extraction throughput and cached ranking",
        "",
        f"Training split of each dataset as ingested; batch size {args.batch_size}.",
        "`extract img/s`: extract_features (JPEG decode, timm preprocessing, forward, DataLoader",
        "with the default workers) from its first batch to its last; `plain forward img/s`: the",
        "model alone on the very same preprocessed batches held in memory; `ratio` = the two.",
        "`extract incl. start-up` adds model loading and worker start-up. Rates are the best",
        f"of {REPEATS} alternating runs of each.",
        "`rank cold`: `rank` with an empty cache (scan, extract, all 8 estimators);",
        "`rank cached`: the same `rank` again, served from the feature, score and scan caches.",
        "",
        markdown_table(rows, cols),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
