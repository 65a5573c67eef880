"""Commands that train and use models: fit, worker, predict, evaluate, strategies, ui."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import autotransfer
from autotransfer import plugins
from autotransfer.cli.explore import (
    CUTS_HELP,
    _add_data_args,
    _csv,
    _cuts,
    add_jpeg_decode_arg,
    add_shortlist_args,
)
from autotransfer.config import (
    RANK_SAMPLE_PER_CLASS,
    RANK_SAMPLE_SHARE,
    RANK_SAMPLE_SIZE,
    VAL_SAMPLE_SIZE,
    DataSettings,
    FitSettings,
)
from autotransfer.tracking.store import read_record
from autotransfer.tracking.ui import serve_ui

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _count(text: str) -> int | None:
    """A number of images, or 'all' (None: no cap)."""
    return None if text.strip().lower() in ("all", "none") else int(text)


def _share(text: str) -> float | None:
    """A share of the time, or 'off' (None)."""
    return None if text.strip().lower() in ("off", "none") else float(text)


def _fit_settings(args: argparse.Namespace):
    budget = args.time_budget
    if args.n_trials is not None and args.time_budget is None:
        budget = None
    elif budget is None:
        budget = "10m"
    named = {f.name for f in dataclasses.fields(FitSettings)}
    given = {k: v for k, v in vars(args).items() if k in named}  # flags named as the fields
    return FitSettings(
        **{
            **given,
            **{
                k: tuple(given[k]) if given[k] else None
                for k in ("strategies", "backbones", "devices")
            },
            "time_budget": budget,
            "device": None if args.devices else args.device,
            "num_workers": args.workers,
            "heartbeat_seconds": args.heartbeat,
            "trackers": () if args.no_tracking else tuple(args.trackers),
        }
    )


def cmd_fit(args: argparse.Namespace) -> int:
    result = autotransfer.fit(
        args.data,
        _fit_settings(args),
        data_settings=DataSettings(
            val_fraction=args.val_fraction, seed=args.seed, strict=args.strict
        ),
        progress=args.progress,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    b, ens = result.best, result.ensemble
    if ens is not None and ens.kept:
        members = ", ".join(f"#{t} {w:.2f}" for t, w in ens.weights.items())
        print(f"pick: an ensemble of {len(ens.weights)} trials ({members})")
    else:
        on = f"on {b.backbone}" if b.transfer else "(no transfer)"
        print(f"pick: {b.strategy} {on} (trial {b.number}) {json.dumps(b.params)}")
    print("validation: " + _metrics(result.val_metrics))
    if result.test_metrics is not None:
        print("test:       " + _metrics(result.test_metrics))
    if result.verdict is not None:
        print("verdict:    " + result.verdict.sentence)
    if ens is not None:
        print("ensemble:   " + ens.reason)
    if result.refit:
        print("refit:      " + str(result.refit.get("why", "")))
    if result.flip_tta:
        print("flip TTA:   " + str(result.flip_tta.get("why", "")))
    print()
    print(result.leaderboard_table())
    print(f"\nmodel saved in {result.run_dir}/model  ({result.seconds:.0f}s)")
    print(f"browse the trials: autotransfer ui {result.run_dir}")
    return 0


def _metrics(m: dict) -> str:
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")
    return ", ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


def cmd_worker(args: argparse.Namespace) -> int:
    options = ("storage", "study_name", "device", "time_budget", "n_trials", "progress")
    n = autotransfer.run_worker(args.run_dir, **{k: getattr(args, k) for k in options})
    print(f"worker ran {n} trials")
    return 0


def _image_paths(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    result = autotransfer.load(args.model)
    paths = _image_paths(args.images)
    proba = result.predict_proba(paths, batch_size=args.batch_size, device=args.device)
    classes = result.classes
    rows = []
    for path, p in zip(paths, proba):
        i = int(p.argmax())
        row = {"path": path, "label": classes[i], "confidence": round(float(p[i]), 4)}
        if args.proba:
            row["proba"] = {c: round(float(x), 4) for c, x in zip(classes, p)}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['path']}\t{r['label']}\t{r['confidence']:.4f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    result = autotransfer.load(args.model)
    metrics = result.evaluate(args.data, split=args.split, device=args.device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        split = args.split or "default split"
        print(f"{split} ({int(metrics.get('num_images', 0))} images): " + _metrics(metrics))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    rows = [
        {
            "name": r.name,
            "description": getattr(r.obj, "description", ""),
            "relative_cost": getattr(r.obj, "relative_cost", None),
            "plugin": r.plugin,
            "distribution": r.distribution,
        }
        for r in plugins.registered("strategies").values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in sorted(rows, key=lambda r: r["relative_cost"] or 0):
        print(f"{r['name']:22s} cost {r['relative_cost']:<5} {r['description']}")
        print(f"{'':22s} from {r['plugin']} ({r['distribution']})")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base} (Ctrl-C to stop)", flush=True)
    experiment = read_record(args.run_dir).get("experiment_id")
    if experiment is not None:  # MLflow 3 opens an experiment on its GenAI overview
        print(f"the fit's trials: {base}/#/experiments/{experiment}/runs", flush=True)
    return int(serve_ui(args.run_dir, host=args.host, port=args.port) or 0)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register fit, worker, predict, evaluate, strategies and ui."""
    p = sub.add_parser("fit", help="search backbones x strategies within a budget; keep the best")
    _add_data_args(p)
    p.add_argument("--time-budget", default=None, help="wall clock, e.g. 10m, 1h (default 10m)")
    p.add_argument("--n-trials", type=int, default=None, help="trials in the study, at most")
    p.add_argument("--strategies", type=_csv, default=None, help="default: all registered")
    p.add_argument("--backbones", type=_csv, default=None, help="default: all offline")
    add_shortlist_args(p)
    p.add_argument(
        "--rank-share",
        type=float,
        default=0.75,
        help="the most of the time budget the ranking may take (default 0.75; 1: no limit)",
    )
    p.add_argument("--cuts", type=_cuts, default=(), help=CUTS_HELP)
    p.add_argument(
        "--rank-sample-size",
        type=_count,
        default=RANK_SAMPLE_SIZE,
        help=f"images the ranking scores, a stratified sample ('all': every one; default "
        f"{RANK_SAMPLE_SIZE})",
    )
    p.add_argument(
        "--rank-sample-per-class",
        type=_count,
        default=RANK_SAMPLE_PER_CLASS,
        help=f"at most this many of a class in it ('all': no cap; default {RANK_SAMPLE_PER_CLASS})",
    )
    p.add_argument(
        "--rank-sample-share",
        type=_share,
        default=RANK_SAMPLE_SHARE,
        help="size the ranking's sample to this share of the time left, from a pilot's "
        f"measured rate, up to --rank-sample-size ('off': that size; default {RANK_SAMPLE_SHARE})",
    )
    p.add_argument(
        "--val-sample-size",
        type=_count,
        default=VAL_SAMPLE_SIZE,
        help=f"validation images per evaluation in the search ('all'; default {VAL_SAMPLE_SIZE})",
    )
    p.add_argument(
        "--image-cache-memory",
        default=None,
        help="decoded images kept in memory, e.g. 2GB; past it a memory map on disk "
        "(default: a quarter of the available memory)",
    )
    p.add_argument("--resolution", type=int, default=None, help="default: by device and data")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 CPU, 128 CUDA")
    p.add_argument(
        "--augment",
        default="crop_flip",
        choices=("crop_flip", "crop", "none"),
        help="use 'crop' when a mirror image has another label (text, orientation)",
    )
    p.add_argument("--class-weights", default="auto", choices=("auto", "balanced", "none"))
    p.add_argument("--trial-time-limit", default=None, help="default: 40%% of the budget")
    p.add_argument("--pruner", default="median", choices=("median", "none"))
    p.add_argument(
        "--no-ensemble",
        dest="ensemble",
        action="store_false",
        help="never serve an ensemble of trials (by default one is kept when it wins by > 1 SE)",
    )
    p.add_argument(
        "--flip-tta",
        default="auto",
        choices=("auto", "on", "off"),
        help="average each image with its mirror image; auto: on where it wins on validation",
    )
    p.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="keep the search's weights (by default the pick is retrained on train + val)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument(
        "--devices",
        type=_csv,
        default=None,
        help="one process per device on the same study, e.g. cuda:0,cuda:1 (the fit trains on "
        "the first, a worker on each other one)",
    )
    p.add_argument("--workers", type=int, default=None, help="data-loader workers")
    add_jpeg_decode_arg(p)
    p.add_argument("--run-dir", default=None, help="default: ./autotransfer-runs/<folder name>")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite file)")
    p.add_argument("--study-name", default="autotransfer")
    p.add_argument(
        "--shared-checkpoints",
        default=None,
        help="where kept trial models also go, for workers on other machines: 'mlflow' "
        "(the trials' MLflow runs) or a folder every machine mounts",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between a running trial's heartbeats; after 4 missed (a dead worker) "
        "another worker runs the trial again (default 30)",
    )
    p.add_argument("--trackers", type=_csv, default=["mlflow"])
    p.add_argument("--no-tracking", action="store_true", help="no MLflow")
    p.add_argument("--tracking-uri", default=None, help="default: a store in the run folder")
    p.add_argument("--experiment", default=None, help="MLflow experiment name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("worker", help="join the study of a run folder and run trials")
    p.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        help="the fit's run folder; with --storage, this worker's own (another machine)",
    )
    p.add_argument("--storage", default=None, help="the study's database URL (another machine)")
    p.add_argument("--study-name", default="autotransfer")
    p.add_argument("--device", default=None, help="e.g. cuda:1 (default: the fit's)")
    p.add_argument("--time-budget", default=None, help="this worker's wall clock")
    p.add_argument("--n-trials", type=int, default=None, help="trials in the study, at most")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("predict", help="classify images with a saved model or run folder")
    p.add_argument("model", help="a folder written by fit (RUN_DIR or RUN_DIR/model)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--proba", action="store_true", help="print every class's probability")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a saved model on a labelled folder")
    p.add_argument("model", help="a folder written by fit (RUN_DIR or RUN_DIR/model)")
    p.add_argument("data", help="a labelled folder or CSV manifest")
    p.add_argument(
        "--split",
        default=None,
        choices=("train", "val", "test", "all"),
        help="default: the test split if the data has one, else every image",
    )
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("strategies", help="list the training strategies fit searches over")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_strategies)

    p = sub.add_parser("ui", help="open the MLflow UI on a run folder's trials")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
