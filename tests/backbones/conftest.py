"""Fixtures for the backbone tests: tiny timm models, isolated registries, a fake HF cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from autotransfer import plugins


@pytest.fixture
def fresh_plugins():
    """A freshly discovered plugin manager, dropped again afterwards."""
    plugins.reset_plugin_manager()
    yield plugins.get_plugin_manager()
    plugins.reset_plugin_manager()


@pytest.fixture(autouse=True)
def no_shared_weights(monkeypatch, tmp_path):
    """Point the shared folder at a missing path so tests never see a real one."""
    monkeypatch.setenv("AUTOTRANSFER_SHARED_WEIGHTS", str(tmp_path / "no-shared-weights"))


def _tiny_model(arch: str = "test_resnet", seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(arch).eval()


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 64) -> bool:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture
def tiny_model():
    """Factory: a timm ``test_*`` model with seeded weights, in eval mode."""
    return _tiny_model


@pytest.fixture
def same_outputs():
    """Checker: do two models give bit-identical outputs on a fixed random batch?"""
    return _same_outputs


@pytest.fixture
def fake_hf_cache():
    """Factory laying out a folder like a Hugging Face hub cache holding one repo."""
    return _fake_hf_cache


def _fake_hf_cache(root: Path, repo: str, state_dict: dict) -> Path:
    """Lay out ``root`` like a Hugging Face hub cache holding ``repo``'s model.safetensors."""
    from safetensors.torch import save_file

    commit = "0" * 40
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    save_file(state_dict, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"
