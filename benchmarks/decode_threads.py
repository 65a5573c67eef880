"""The decoded-image cache on one thread against the engine's default threads.

For each dataset variant: the training split decoded by ``ImageCache`` into uint8 squares
(side 146, the 128 px protocol's resize, bicubic) with one decoding thread and with
``strategies.images.decode_threads()`` threads, images/s of the best of ``--repeats``
alternating runs (the first run also warms the file cache), and whether both gave the same
pixels. Writes a Markdown table and JSON to benchmarks/results/.

    python benchmarks/decode_threads.py
    python benchmarks/decode_threads.py --variants aid_subset/vtab1k --repeats 3
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _variants import load_variant  # noqa: E402

from autotransfer.strategies import images  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("flowers5_subset/vtab1k", "aid_subset/vtab1k", "hymenoptera/vtab1k")
SIDE = 146


def decode(ds, threads: int) -> tuple[torch.Tensor, float]:
    """The training split decoded by a fresh cache on ``threads`` threads, and seconds."""
    with mock.patch.object(images, "decode_threads", lambda: threads):
        start = time.perf_counter()
        x, _ = images.ImageCache(ds).split("train", side=SIDE)
        return x, time.perf_counter() - start


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    threads = images.decode_threads()
    rows = []
    for variant in args.variants.split(","):
        ds = load_variant(variant)
        best = {1: float("inf"), threads: float("inf")}
        pixels = {}
        for _ in range(args.repeats):
            for n in best:
                pixels[n], s = decode(ds, n)
                best[n] = min(best[n], s)
        n_images = len(ds.train)
        rows.append(
            {
                "variant": variant,
                "images": n_images,
                "one thread img/s": round(n_images / best[1]),
                f"{threads} threads img/s": round(n_images / best[threads]),
                "speed-up": round(best[1] / best[threads], 2),
                "same pixels": bool(torch.equal(pixels[1], pixels[threads])),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    machine = machine_info()
    out = RESULTS / f"decode_threads_{machine['device']}"
    md = [
        f"# Decoded-image cache: one thread against {threads} ({machine['device']})",
        "",
        f"The training split of each variant decoded by `ImageCache` (side {SIDE}, bicubic) "
        f"on one thread and on `decode_threads()` = {threads}; images/s of the best of "
        f"{args.repeats} alternating runs.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "Reproduce: `python benchmarks/decode_threads.py`",
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
