"""From a folder of labelled images to a saved classifier: rank, search, predict, save, load.

python examples/quickstart.py path/to/images        # class folders; a 10-minute search
python examples/quickstart.py                       # a small generated folder, 2 minutes
python examples/quickstart.py data/ --time-budget 30m --backbones efficientnet_lite0

The search is tracked in MLflow (browse it with `autotransfer ui <run folder>`) unless
--no-tracking is given.
"""

import argparse
import tempfile
from pathlib import Path

import autotransfer

parser = argparse.ArgumentParser()
parser.add_argument("folder", nargs="?", help="image folder (default: a generated one)")
parser.add_argument("--backbones", default=None, help="comma-separated (default: all offline)")
parser.add_argument("--time-budget", default=None, help="e.g. 90s, 10m (default 10m, or 2m)")
parser.add_argument("--trials", type=int, default=None, help="stop after this many trials")
parser.add_argument("--resolution", type=int, default=None, help="default: chosen for the data")
parser.add_argument("--run-dir", default=None, help="default: ./autotransfer-runs/<folder>")
parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
args = parser.parse_args()

if args.folder:
    folder = Path(args.folder)
else:  # three classes of synthetic images, 20 each: even a linear probe separates them
    from autotransfer.testing.images import make_image_folder

    folder = make_image_folder(
        Path(tempfile.gettempdir()) / "autotransfer-quickstart", classes=("cat", "dog", "owl"),
        per_class=20,
    )  # fmt: skip

result = autotransfer.fit(
    folder,
    time_budget=args.time_budget or ("10m" if args.folder else "2m"),
    n_trials=args.trials,
    backbones=args.backbones.split(",") if args.backbones else None,
    resolution=args.resolution,
    run_dir=args.run_dir,
    trackers=() if args.no_tracking else ("mlflow",),
)

best = result.best
done = sum(r.state == "complete" for r in result.leaderboard)
print(
    f"picked: {best.strategy} on {best.backbone}, validation accuracy {best.val_accuracy:.3f} "
    f"({done} trials completed in {result.seconds:.0f}s)"
)
print(result.leaderboard_table(limit=10))

image = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
label = result.predict([image])[0]
print(f"{image.relative_to(folder)} -> {label}")

saved = result.save(Path(result.run_dir) / "best-model")
loaded = autotransfer.load(saved)
assert loaded.predict([image]) == [label]
print(f"saved to {saved}; reloaded, it predicts {loaded.predict([image])[0]!r} too")
if result.tracking:
    print(f"MLflow: autotransfer ui {result.run_dir}")
