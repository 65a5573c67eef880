"""Pack what a GPU machine without internet needs for the benchmarks into ``device_carry/``.

A device machine (docs/benchmarks.md, "The GPU device session") has torch, timm, scikit-learn and
the like, but nothing else can be fetched there and ``../shared`` does not travel. This
script, run here, fills the git-ignored folder ``device_carry/`` that the call names in
``carry`` (64 MiB for the whole working tree), and ``benchmarks/device_session.sh`` uses:

* ``wheels/``: optuna and the dependencies the machine lacks (for its Python, 3.12 by
  default), at the versions installed here, and a wheel of autotransfer itself (the
  built-in plugins are entry points, so the package must be installed there);
* ``site/``: the offline ImageNet weight packages (``package:*`` backbones) as importable
  folders with the same file names, their tensors stored in float16 to halve them (the
  backbones load them into float32 parameters; the ids stay ``package:*``, so the results
  join the CPU ones). The rounding is measured: logits within 0.04 of float32's; on the
  flowers' 1-shot grid (CPU) 19 of 30 configurations kept their validation accuracy, the
  others moved by -7 to +3 of 128 images, the grid's best not at all;
* ``datasets/``: copies of the shared datasets the session uses.

    python benchmarks/device_kit.py                     # flowers5_subset, Python 3.12
    python benchmarks/device_kit.py --datasets flowers5_subset,notmnist_subset
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _variants import SHARED  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "device_carry"
# what optuna needs beyond the device image's packages (PyYAML, tqdm, packaging, numpy,
# MarkupSafe and typing-extensions are there)
WHEELS = ("optuna", "alembic", "Mako", "SQLAlchemy", "colorlog")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_MIB = 58  # the carry limit is 64 MiB with the tracked tree (about 3.5 MiB)


def size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def wheels(out: Path, python: str) -> None:
    out.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    download = "download --quiet --no-deps --only-binary=:all: --implementation cp".split()
    target = ["--python-version", python, *platforms, "-d", str(out)]
    subprocess.run([*pip, *download, *target, *pins], check=True)
    build = "wheel --quiet --no-deps --no-build-isolation -w".split()
    subprocess.run([*pip, *build, str(out), str(REPO)], check=True)


def weights(out: Path) -> list[str]:
    """Each ``package:*`` backbone's weights file, float16, where the package source finds
    it once ``out`` is on the Python path."""
    from autotransfer.backbones.zoo import package_backbones

    done = []
    for spec in package_backbones():
        module, inner = spec.weights.location.split(":", 1)
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise SystemExit(f"{module} is not installed here: pip install 'autotransfer[zoo]'")
        src = Path(next(iter(found.submodule_search_locations))) / inner
        dst = out / module / inner
        dst.parent.mkdir(parents=True, exist_ok=True)
        (out / module / "__init__.py").write_text("")
        state = torch.load(src, map_location="cpu", weights_only=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(half, dst)
        done.append(spec.id)
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="flowers5_subset", help="comma-separated")
    p.add_argument("--python", default="3.12", help="the device machine's Python")
    p.add_argument("--out", default=str(KIT))
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    wheels(out / "wheels", args.python)
    ids = weights(out / "site")
    for name in args.datasets.split(","):
        shutil.copytree(SHARED / name, out / "datasets" / name)
    for part in ("wheels", "site", "datasets"):
        print(f"{part:9s} {size_mib(out / part):6.1f} MiB")
    print(f"weights: {', '.join(ids)}")
    total = size_mib(out)
    print(f"total    {total:6.1f} MiB (at most {LIMIT_MIB})")
    if total > LIMIT_MIB:
        print("too large to carry with the repository: fewer datasets", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
