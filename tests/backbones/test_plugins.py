"""A third-party weight source and backbone, registered through a plugin object."""

from __future__ import annotations

import pytest
import timm
import torch

import autotransfer
from autotransfer import plugins
from autotransfer.backbones.candidates import candidate_info
from autotransfer.backbones.load import load_backbone, resolve_backbones
from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.errors import PluginError, UnknownNameError


class MemorySource:
    """Weights kept in a dict; ``location`` is the key."""

    name = "memory"

    def __init__(self, store: dict) -> None:
        self.store = store

    def is_available(self, spec):
        return spec.weights.location in self.store

    def load_state_dict(self, spec):
        if spec.weights.location == "broken":
            raise KeyError("boom")
        return self.store[spec.weights.location]

    def fingerprint(self, spec):
        return f"memory:{spec.weights.location}"

    def missing_hint(self, spec):
        return f"Put {spec.weights.location!r} in the store."


class MemoryPlugin:
    def __init__(self, store: dict) -> None:
        self.store = store

    @autotransfer.hookimpl
    def autotransfer_register_weight_sources(self):
        return [MemorySource(self.store)]

    @autotransfer.hookimpl
    def autotransfer_register_backbones(self):
        ref = WeightsRef("memory", "tiny", imagenet_top1=None)
        return [BackboneSpec("memory:test_resnet", "test_resnet", ref, input_size=160)]


def test_third_party_source_and_reset(fresh_plugins, same_outputs):
    torch.manual_seed(7)
    reference = timm.create_model("test_resnet").eval()
    fresh_plugins.register(
        MemoryPlugin({"tiny": reference.state_dict(), "broken": {}}), name="memory_plugin"
    )

    assert isinstance(plugins.lookup("weight_sources", "memory"), MemorySource)
    assert plugins.registered("weight_sources")["memory"].plugin == "memory_plugin"
    (spec,) = resolve_backbones(["memory:test_resnet"])
    assert candidate_info(spec).available_offline
    assert same_outputs(load_backbone(spec), reference)
    (adhoc,) = resolve_backbones(["memory:tiny#test_resnet"])
    assert same_outputs(load_backbone(adhoc), reference)
    (broken,) = resolve_backbones(["memory:broken#test_resnet"])
    with pytest.raises(PluginError, match="memory_plugin"):
        load_backbone(broken)

    plugins.reset_plugin_manager()
    with pytest.raises(UnknownNameError):
        plugins.lookup("weight_sources", "memory")
    assert "file" in plugins.registered("weight_sources")
