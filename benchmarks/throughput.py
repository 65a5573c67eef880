"""How much the data pipeline costs: the engine's images/s against the bare model's.

For each backbone, at one resolution and batch size, on one device:

* **plain forward**: the model alone on a synthetic batch already on the device (eval mode,
  inference); **extract**: the engine's ``extract_features`` on a real dataset (JPEG decode,
  timm preprocessing, DataLoader workers, forward), from its first batch to its last;
* **plain train step**: forward, backward and an SGD step on a synthetic batch already on
  the device; **train**: the engine's training loop (``full_finetune`` through
  ``strategies/loop.py``: augmentation of the decoded-image cache, normalisation, the
  step, and the per-epoch validation pass), training images per second of epoch wall time
  over the epochs after the first.

On CUDA both sides use bf16 autocast and channels_last, as the engine does. The ratios
(engine / plain) say what the pipeline costs: 1.0 = nothing. With ``--fit-budget`` a real
``autotransfer.fit`` runs on the dataset while a thread samples the GPU's utilisation
through NVML. Writes a Markdown table, JSON and a PNG to benchmarks/results/.

    python benchmarks/throughput.py                                # CPU: 128 px, batch 32
    python benchmarks/throughput.py --device cuda --fit-budget 3m  # GPU: 224 px, batch 128
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402
from _plot import save_figure, subplots  # noqa: E402
from _variants import SHARED  # noqa: E402

import autotransfer  # noqa: E402
from autotransfer.backbones.features import extract_features  # noqa: E402
from autotransfer.backbones.load import load_backbone, resolve_backbones  # noqa: E402
from autotransfer.testing.strategies import make_train_context  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKBONES = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,mobilenetv2_100"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(step, dev: torch.device, min_seconds: float, warmup: int = 3) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls, over at least ``min_seconds``."""
    for _ in range(warmup):
        step()
    _sync(dev)
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if n >= 3:
            _sync(dev)
            if time.perf_counter() - t0 >= min_seconds:
                return (time.perf_counter() - t0) / n


def plain_rates(spec, res: int, batch: int, dev: torch.device, min_seconds: float):
    """(forward img/s, forward+backward+step img/s) of the model alone on synthetic batches."""
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = load_backbone(spec).to(dev).to(memory_format=fmt)
    x = torch.randn(batch, 3, res, res, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 5, (batch,), device=dev)

    model.eval()

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            model(x)

    fwd = batch / _timed(forward, dev, min_seconds)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step() -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step = batch / _timed(train_step, dev, min_seconds)
    return fwd, step


def extract_rate(ds, spec, res: int, batch: int, dev: torch.device, workers, images: int):
    """Steady images/s of the engine's feature extraction, first batch out to last, over
    ``images`` images (the training split's files repeated: each is decoded every time)."""
    import dataclasses

    ds = dataclasses.replace(ds, train=(ds.train * (images // len(ds.train) + 1))[:images])
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        extract_features(
            ds,
            spec,
            resolution=res,
            batch_size=batch,
            num_workers=workers,
            device=dev,
            cache_dir=tmp,
            use_cache=False,
            progress=lambda done, total: marks.append((time.perf_counter(), done)),
        )
    (t_first, n_first), (t_last, n_last) = marks[0], marks[-1]
    return (n_last - n_first) / max(t_last - t_first, 1e-9)


def engine_train_rate(ds, spec, res: int, batch: int, dev: torch.device, epochs: int):
    """Training images/s of the engine's loop (full_finetune), epochs 2..N, and the share
    of an epoch spent on its validation pass (measured separately, same model)."""
    from autotransfer.strategies.full_finetune import FullFinetune

    stamps: list[float] = []
    ctx = make_train_context(
        ds,
        {"epochs": epochs, "mixup_alpha": 0.0, "freeze_bn": False},
        backbone=spec.id,
        resolution=res,
        batch_size=batch,
        device=str(dev),
    )
    report = ctx.report

    def timed_report(epoch, metrics):
        _sync(dev)
        stamps.append(time.perf_counter())
        report(epoch, metrics)

    ctx.report = timed_report
    FullFinetune().train(ctx)
    per_epoch = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return len(ds.train) / per_epoch, len(stamps)


class GpuSampler:
    """Samples the GPU's utilisation (NVML) every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self.interval, self.util, self.mem = interval, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            self.util.append((time.perf_counter(), rates.gpu))
            self.mem.append(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            time.sleep(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fit_utilisation(data: str, budget: str, run_dir: Path) -> dict:
    """GPU utilisation while a real fit runs, overall and during its trials only."""
    with GpuSampler() as s:
        t0 = time.perf_counter()
        result = autotransfer.fit(
            data, time_budget=budget, run_dir=str(run_dir), trackers=(), progress=False
        )
        t1 = time.perf_counter()
    records = [r for r in result.leaderboard if r.state == "complete"]
    trials_from = t1 - sum(r.seconds or 0.0 for r in result.leaderboard)
    during = [u for t, u in s.util if t >= trials_from]
    all_util = [u for _, u in s.util]
    return {
        "fit seconds": round(t1 - t0, 1),
        "trials": len(result.leaderboard),
        "complete": len(records),
        "pick": f"{result.best.strategy} / {result.best.backbone}",
        "val accuracy": round(result.best.val_accuracy, 4),
        "GPU util mean %": round(statistics.mean(all_util), 1),
        "GPU util in trials mean %": round(statistics.mean(during), 1) if during else None,
        "GPU util in trials median %": round(statistics.median(during), 1) if during else None,
        "samples >= 80 % busy": round(sum(u >= 80 for u in during) / max(1, len(during)), 3),
        "GPU memory peak GiB": round(max(s.mem) / 2**30, 2),
    }


def plot(rows: list[dict], path: Path, title: str) -> None:

    names = [r["backbone"].split(":")[-1] for r in rows]
    series = [("plain forward img/s", "extract img/s"), ("plain train img/s", "train img/s")]
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, (plain, engine) in zip(axes, series):
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r[plain] for r in rows], 0.4, label=plain)
        ax.bar([x + 0.2 for x in xs], [r[engine] for r in rows], 0.4, label=engine)
        ax.set_xticks(list(xs), names, rotation=15)
        ax.set_ylabel("images / s")
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = parser(__doc__)
    p.add_argument("--data", default=str(SHARED / "flowers5_subset"))
    p.add_argument("--backbones", default=BACKBONES)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="default: CUDA 224, CPU 128")
    p.add_argument("--batch-size", type=int, default=None, help="default: CUDA 128, CPU 32")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of extraction")
    p.add_argument("--epochs", type=int, default=None, help="engine epochs (default CUDA 8, CPU 3)")
    p.add_argument("--seconds", type=float, default=None, help="timing window of plain rates")
    p.add_argument(
        "--extract-images",
        type=int,
        default=None,
        help="images per extraction run (default: CUDA 4096, CPU 512)",
    )
    p.add_argument("--fit-budget", default=None, help="also run fit and sample GPU utilisation")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    res = args.resolution or (224 if cuda else 128)
    batch = args.batch_size or (128 if cuda else 32)
    epochs = args.epochs or (8 if cuda else 3)
    seconds = args.seconds or (2.0 if cuda else 5.0)
    extract_images = args.extract_images or (4096 if cuda else 512)
    out = Path(args.out or HERE / "results" / f"throughput_{'cuda' if cuda else 'cpu'}")
    torch.manual_seed(0)
    if cuda:
        torch.backends.cudnn.benchmark = True
    ds = autotransfer.open_folder(args.data, progress=False)
    rows = []
    for spec in resolve_backbones(args.backbones.split(",")):
        fwd, step = plain_rates(spec, res, batch, dev, seconds)
        # best of two: the first read of the JPEG files may come from a cold disk
        ext = max(
            extract_rate(ds, spec, res, batch, dev, args.workers, extract_images) for _ in range(2)
        )
        train, n_epochs = engine_train_rate(ds, spec, res, batch, dev, epochs)
        rows.append(
            {
                "backbone": spec.id,
                "plain forward img/s": round(fwd, 1),
                "extract img/s": round(ext, 1),
                "extract ratio": round(ext / fwd, 3),
                "plain train img/s": round(step, 1),
                "train img/s": round(train, 1),
                "train ratio": round(train / step, 3),
                "epochs timed": n_epochs - 1,
            }
        )
        print(rows[-1], flush=True)
    fit_row = None
    if args.fit_budget and cuda:
        fit_row = fit_utilisation(args.data, args.fit_budget, Path(tempfile.mkdtemp()) / "run")
        print(fit_row, flush=True)
    info = machine_info()
    name = Path(args.data).name
    md = [
        f"# Throughput: the engine against the bare model ({info['device']})",
        "",
        f"Dataset {name} ({len(ds.train)} training images), {res} px, batch {batch}, "
        f"{'bf16 autocast + channels_last' if cuda else 'fp32'} on both sides.",
        "`plain forward` / `plain train`: the model alone on a synthetic batch already on the",
        "device (inference; forward + backward + SGD step). `extract`: extract_features (JPEG",
        "decode, preprocessing, DataLoader, forward) from its first batch to its last, over",
        f"{extract_images} images (the training files repeated), best of 2.",
        "`train`: the engine's loop (full_finetune: augmentation of the decoded-image cache,",
        "normalisation, step, and the per-epoch validation pass), training images per second",
        "of epoch wall time, epochs after the first. Ratio = engine / plain (1.0: the pipeline",
        "costs nothing).",
        "",
        markdown_table(rows, list(rows[0])),
        "",
    ]
    if fit_row:
        md += [
            f"GPU utilisation during `autotransfer.fit({name}, time_budget={args.fit_budget!r})`",
            "(NVML, sampled every 0.1 s; 'in trials' leaves out describing and ranking):",
            "",
            markdown_table([fit_row], list(fit_row)),
            "",
        ]
    md.append("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    settings = vars(args) | {
        "resolution": res,
        "batch_size": batch,
        "epochs": epochs,
        "extract_images": extract_images,
    }
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "settings": settings, "rows": rows, "fit": fit_row}, indent=2)
    )
    plot(rows, out.with_suffix(".png"), f"{info['device']}, {res} px, batch {batch}")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
