"""Commands that look at data and backbones: describe, rank, plugins, zoo, demo."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import autotransfer
from autotransfer import plugins
from autotransfer.backbones.candidates import candidate_info
from autotransfer.backbones.load import list_candidates
from autotransfer.config import JPEG_DECODE, DataSettings, ExtractionSettings
from autotransfer.data.demo import write_digits_folder

log = logging.getLogger("autotransfer")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


CUTS_HELP = (
    "also rank each backbone cut after these feature stages, e.g. 2,3 (negative: from the "
    "end, --cuts=-2 is the stage before the last); ids get @<stage>"
)


def _cuts(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--cuts takes comma-separated stage numbers such as 2,3 or -2, not {value!r}"
        ) from None


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        help="image folder (root/<class>/*, root/train|val|test/<class>/*) "
        "or a CSV manifest with columns path,label[,split]",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of train carved out as validation when there is no val split",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--strict",
        action="store_true",
        help="unreadable or non-image files are an error instead of a skip",
    )


def _add_extraction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbones",
        type=_csv,
        default=None,
        help="comma-separated backbone ids or names (default: all available offline)",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input resolution in pixels (default: each backbone's own)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: 8 on CPU, 128 on CUDA)",
    )
    p.add_argument("--workers", type=int, default=None, help="data-loader workers")
    add_jpeg_decode_arg(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument(
        "--cache-dir", default=None, help="feature cache (default: ~/.cache/autotransfer)"
    )
    p.add_argument("--no-cache", action="store_true", help="recompute features, do not store them")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def add_jpeg_decode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jpeg-decode",
        choices=JPEG_DECODE,
        default=JPEG_DECODE[0],
        help="where JPEGs are decoded: on the device in batches, or by the loader workers "
        "(default auto: the device when it is a GPU)",
    )


def add_shortlist_args(p: argparse.ArgumentParser) -> None:
    """``--top-k`` and ``--no-hedge``: how many backbones the ranking's shortlist keeps."""
    p.add_argument("--top-k", type=int, default=3, help="backbones kept from the ranking")
    p.add_argument(
        "--no-hedge",
        dest="hedge",
        action="store_false",
        help="keep only the top k, without another architecture family's best",
    )


def _reading(args: argparse.Namespace) -> dict[str, Any]:
    """How ``describe`` and ``rank`` read the folder and extract: their keyword arguments
    ``data_settings``, ``extraction`` and ``progress``, from the shared options."""
    data = DataSettings(val_fraction=args.val_fraction, seed=args.seed, strict=args.strict)
    ex = ExtractionSettings(
        resolution=args.resolution,
        batch_size=args.batch_size,
        num_workers=args.workers,
        jpeg_decode=args.jpeg_decode,
        device=args.device,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
    )
    return {"data_settings": data, "extraction": ex, "progress": args.progress}


def format_descriptor(d: Any) -> str:
    """A readable multi-line view of a DatasetDescriptor."""
    lines = [f"dataset      {d.root}  ({d.layout})"]
    sizes = ", ".join(f"{k} {v}" for k, v in d.split_sizes.items())
    lines.append(f"images       {d.num_images}  ({sizes})")
    lines.append(f"classes      {d.num_classes}")
    pc = d.train_per_class
    lines.append(
        f"per class    train min {pc['min']:.0f}, median {pc['median']:.0f}, max {pc['max']:.0f}"
        f"; imbalance {d.imbalance_ratio:.2f}x"
    )
    s = d.image_size
    lines.append(
        f"image size   median {s['width_median']:.0f}x{s['height_median']:.0f}, "
        f"min {s['width_min']:.0f}x{s['height_min']:.0f}, max {s['width_max']:.0f}x"
        f"{s['height_max']:.0f}; aspect {s['aspect_min']:.2f}..{s['aspect_max']:.2f}"
    )
    modes = ", ".join(f"{m} {n}" for m, n in d.color_modes.items())
    chans = ", ".join(f"{c}ch {n}" for c, n in d.channels.items())
    lines.append(f"colour       {modes}  ({chans})")
    r = d.regime
    lines.append(
        f"BiT regime   {r['regime']}: {r['schedule_steps']} steps, resize {r['resize']} crop "
        f"{r['crop']}, mixup {r['mixup_alpha']}"
    )
    lines.append(
        f"skipped      {d.skipped_files} files; {d.duplicates_dropped} eval duplicates dropped"
    )
    if d.source_similarity:
        lines.append(
            "similarity to the pretraining source: the source head's entropy (0 certain..1 "
            "uniform), confidence, and mutual information (how much it tells the images apart, "
            "0..1); BN KL: last-BatchNorm statistics against the source's (0 = the same)"
        )
        counted = {v.images for v in d.source_similarity.values()}
        train = d.split_sizes.get("train", 0)
        if len(counted) == 1 and 0 < (n := counted.pop()) < train:
            lines.append(f"  (measured on a stratified sample of {n} of {train} training images)")
        w = max(len(k) for k in d.source_similarity)
        cols = ("entropy", "confidence", "mutual_info", "bn_kl")
        lines.append(f"  {'backbone'.ljust(w)}  " + "  ".join(c.ljust(11) for c in cols))
        for k, v in d.source_similarity.items():
            vals = (v.head_entropy, v.head_confidence, v.head_mutual_info, v.bn_kl)
            cells = ("-" if x is None else f"{x:.3f}" for x in vals)
            lines.append(f"  {k.ljust(w)}  " + "  ".join(c.ljust(11) for c in cells))
    for name, extra in d.extra.items():
        lines.append(f"{name}: {json.dumps(extra, default=str)}")
    return "\n".join(lines)


def cmd_describe(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    d = autotransfer.describe(
        args.data,
        backbones=args.backbones,
        similarity=not args.no_similarity,
        **_reading(args),
    )
    if args.json:
        print(d.to_json())
    else:
        print(format_descriptor(d))
        print(f"({time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    r = autotransfer.rank(
        args.data,
        backbones=args.backbones,
        estimators=args.estimators,
        top_k=args.top_k,
        hedge=args.hedge,
        aggregate=args.aggregate,
        include_controls=args.controls,
        cuts=args.cuts,
        seed=args.seed,
        **_reading(args),
    )
    if args.json:
        print(r.to_json())
    else:
        print(r.table())
        print(f"shortlist: {', '.join(r.shortlist)}  ({r.seconds:.1f}s)")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = plugins.plugin_infos()
    rows = []
    for kind in plugins.KINDS:
        for reg in plugins.registered(kind).values():
            rows.append(
                {
                    "kind": kind,
                    "name": reg.name,
                    "plugin": reg.plugin,
                    "distribution": reg.distribution,
                }
            )
    if args.json:
        print(json.dumps({"plugins": [i.__dict__ for i in infos], "registered": rows}, indent=2))
        return 0
    print("plugins (entry-point group 'autotransfer'):")
    for i in infos:
        print(f"  {i.name:28s} {i.distribution} {i.version}")
    for kind in plugins.KINDS:
        print(f"{kind}:")
        for row in rows:
            if row["kind"] == kind:
                print(f"  {row['name']:40s} from {row['plugin']} ({row['distribution']})")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    infos = [candidate_info(s) for s in list_candidates(include_unavailable=True)]
    if args.available:
        infos = [i for i in infos if i.available_offline]
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    print(f"{'backbone':48s} {'params(M)':>9s} {'input':>5s} {'top1':>6s} {'source':12s} offline")
    for i in infos:
        params = "-" if i.params is None else f"{i.params / 1e6:.1f}"
        top1 = "-" if i.imagenet_top1 is None else f"{i.imagenet_top1:.1f}"
        avail = "yes" if i.available_offline else "no"
        print(
            f"{i.id:48s} {params:>9s} {i.input_size:>5d} {top1:>6s} {i.source_dataset:12s} {avail}"
        )
    missing = [i for i in infos if not i.available_offline]
    if missing:
        print("\nto make missing weights available:")
        for i in missing:
            print(f"  {i.id}: {i.hint}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    main = args.main  # the command line's main (cli.main), to run each command as typed

    folder = write_digits_folder(Path(args.dest))
    print(f"demo data: scikit-learn's handwritten digits written to {folder}\n")
    common = ["--resolution", str(args.resolution)]
    if args.backbones:
        common += ["--backbones", ",".join(args.backbones)]
    if args.cache_dir:
        common += ["--cache-dir", args.cache_dir]
    print("$ autotransfer describe", folder, *common)
    rc = main(["describe", str(folder), *common])
    print("\n$ autotransfer rank", folder, *common)
    if rc:
        return rc
    rc = main(["rank", str(folder), *common])
    if rc or args.no_fit:
        return rc
    fit = [str(folder), "--time-budget", args.time_budget, "--run-dir", args.run_dir]
    fit += ["--resolution", str(args.resolution)]
    if args.backbones:
        fit += ["--backbones", ",".join(args.backbones)]
    print("\n$ autotransfer fit", *fit)
    return main(["fit", *fit])


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register describe, rank, plugins, zoo and demo."""
    p = sub.add_parser("describe", help="dataset descriptors and similarity to each source")
    _add_data_args(p)
    _add_extraction_args(p)
    p.add_argument(
        "--no-similarity",
        action="store_true",
        help="skip the backbone forward passes (no source similarity)",
    )
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("rank", help="rank backbones by transferability, without training")
    _add_data_args(p)
    _add_extraction_args(p)
    p.add_argument(
        "--estimators",
        type=_csv,
        default=None,
        help="comma-separated estimator names (default: all registered)",
    )
    p.add_argument(
        "--aggregate",
        type=_csv,
        default=None,
        help="estimators averaged into the aggregate (default: those reading features)",
    )
    add_shortlist_args(p)
    p.add_argument("--controls", action="store_true", help="add random-init control backbones")
    p.add_argument("--cuts", type=_cuts, default=(), help=CUTS_HELP)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("plugins", help="list registered plugins and what they provide")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("zoo", help="list candidate backbones and whether their weights are here")
    p.add_argument("--available", action="store_true", help="only those available offline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("demo", help="describe, rank and fit scikit-learn's digits (real data)")
    p.add_argument("--dest", default="demo_data/digits", help="where to write the digits folder")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--backbones", type=_csv, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--time-budget", default="3m", help="budget of the demo's fit")
    p.add_argument("--run-dir", default="demo_data/run", help="the demo fit's run folder")
    p.add_argument("--no-fit", action="store_true", help="stop after describe and rank")
    p.set_defaults(func=cmd_demo)
