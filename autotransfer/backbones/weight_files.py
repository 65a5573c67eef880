"""Reading weight files without running code from them: safetensors, or
``torch.load(..., weights_only=True)``; a checkpoint that needs pickled classes is refused.
A state dict wrapped in ``{"state_dict": ...}`` and the like is unwrapped, and a
``module.``/``model.`` prefix on every key dropped."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.key_maps import apply_key_map
from autotransfer.errors import ConfigError, WeightsUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from autotransfer.backbones.spec import BackboneSpec

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def find_weights_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the one weights file inside the folder ``path``.

    A folder may hold several files; ``.safetensors`` wins over the pickle formats.

    >>> find_weights_file("weights/resnet18")  # doctest: +SKIP
    PosixPath('weights/resnet18/model.safetensors')
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise WeightsUnavailableError(f"Weights file {p} does not exist.")
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(suffix))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(
                f"Folder {p} holds several {suffix} files ({', '.join(f.name for f in found)}). "
                "Name the file itself instead of the folder."
            )
    raise WeightsUnavailableError(
        f"Folder {p} holds no weights file (looked for {', '.join(WEIGHT_SUFFIXES)})."
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors in a weights file, unwrapped from ``state_dict``/``model``/``module.``.

    ``.safetensors`` goes through ``safetensors.torch.load_file``; anything else through
    ``torch.load(..., map_location="cpu", weights_only=True)``, which refuses pickled code.

    >>> sd = read_state_dict("resnet18.safetensors")  # doctest: +SKIP
    """
    import torch

    p = find_weights_file(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as exc:  # SafetensorError, OSError: a damaged or mislabelled file
            raise WeightsUnavailableError(
                f"{p} is not a readable safetensors file ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}). It may be "
                "damaged, cut short, or another format under a .safetensors name; nothing "
                "in it was executed. Download or export it again."
            ) from exc
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        raise WeightsUnavailableError(
            f"{p} cannot be read safely: it needs pickled Python objects beyond plain tensors "
            f"({str(exc).splitlines()[0][:200]}). "
            "autotransfer never runs code from a weights file. "
            "Convert it once, in an environment you trust, with: "
            "`torch.save(torch.load(path, weights_only=False)['state_dict'], 'clean.pth')` or "
            "`safetensors.torch.save_file(state_dict, 'weights.safetensors')`, then use that file."
        ) from exc
    return _unwrap(obj, p)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(3):  # {"state_dict": {"model": {...}}} and the like
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise WeightsUnavailableError(
            f"{path} does not hold a state dict (found {type(obj).__name__}). Save "
            "`model.state_dict()` rather than the model object."
        )
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k.removeprefix(prefix): v for k, v in sd.items()}
    return sd


def stat_fingerprint(kind: str, path: Path) -> str:
    st = path.stat()
    raw = f"{kind}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def read_mapped(path: Path, spec: BackboneSpec) -> dict[str, torch.Tensor]:
    return apply_key_map(spec.weights.key_map, read_state_dict(path))
