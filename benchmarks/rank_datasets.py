"""`autotransfer describe` and `autotransfer rank` on every real dataset in ../shared/datasets.

Every offline ImageNet backbone, each at its own input resolution (or --resolution), on
the training split (the folders' own train/test split; validation carved from train).
Times: `describe` with an empty feature cache (scan + one forward pass per backbone), then
`rank` (features from the cache, all estimators scored). Writes the descriptors and
ranking tables as Markdown, and JSON, to benchmarks/results/.

    python benchmarks/rank_datasets.py [--resolution 128] [--datasets hymenoptera,aid_subset]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402
from autotransfer.cli import format_descriptor  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--datasets", default=None, help="comma-separated names (default: all)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results" / "rank_datasets_cpu"))
    args = p.parse_args(argv)
    names = (
        args.datasets.split(",")
        if args.datasets
        else sorted(d.name for d in SHARED.iterdir() if (d / "train").is_dir())
    )
    cache = Path(tempfile.mkdtemp(prefix="autotransfer-bench-"))
    ex = autotransfer.ExtractionSettings(resolution=args.resolution, cache_dir=cache)
    summary, sections, records = [], [], []
    for name in names:
        root = SHARED / name
        t0 = time.perf_counter()
        d = autotransfer.describe(root, extraction=ex, progress=False)
        t_describe = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = autotransfer.rank(root, extraction=ex, progress=False)
        t_rank = time.perf_counter() - t0
        best = r.rows[0]
        summary.append(
            {
                "dataset": name,
                "train images": d.split_sizes["train"],
                "classes": d.num_classes,
                "describe s (extract)": round(t_describe, 1),
                "rank s (cached features)": round(t_rank, 1),
                "pick": best.backbone,
                "shortlist": ", ".join(r.shortlist),
                "prior's pick": max(r.rows, key=lambda row: row.scores["imagenet_top1"]).backbone,
            }
        )
        sections += [
            f"## {name}",
            "",
            "```",
            "$ autotransfer describe " + str(root),
            format_descriptor(d),
            f"({t_describe:.1f}s)",
            "",
            "$ autotransfer rank " + str(root),
            r.table(),
            f"shortlist: {', '.join(r.shortlist)}  ({t_rank:.1f}s)",
            "```",
            "",
        ]
        records.append(
            {
                "dataset": name,
                "describe_seconds": t_describe,
                "rank_seconds": t_rank,
                "descriptor": d.to_dict(),
                "ranking": r.to_dict(),
            }
        )
        print(summary[-1], flush=True)
    info = machine_info()
    md = [
        "# describe and rank on the shared datasets",
        "",
        f"Resolution: {args.resolution or 'each backbone own input size'}; "
        "cold feature cache at the start of each `describe`.",
        "",
        markdown_table(summary, list(summary[0])),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        *sections,
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "datasets": records}, indent=2, default=str)
    )
    print("\n".join(md[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
