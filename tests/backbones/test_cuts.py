"""Backbones cut after an earlier stage (``<id>@<stage>``): rank, fit, the saved model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import autotransfer
from autotransfer import plugins
from autotransfer.backbones.candidates import candidate_info
from autotransfer.backbones.cuts import cut_model, split_cut, stage_channels, with_cuts
from autotransfer.backbones.features import extract_features, forward_batch
from autotransfer.backbones.load import load_backbone, parse_backbone_id, resolve_backbones
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.config import FitSettings, RankSettings
from autotransfer.errors import ConfigError
from autotransfer.model import Classifier
from autotransfer.testing.images import make_image_folder

TINY_ARCHS = ("test_resnet", "test_efficientnet", "test_vit")
STRATEGIES = ("feature_extraction", "full_finetune", "partial_freeze", "discriminative_lr")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuts")
    return make_image_folder(root / "data", classes=("cat", "dog", "owl"), per_class=10)


def _one(name: str) -> BackboneSpec:
    (spec,) = resolve_backbones(name)
    return spec


def test_ids_parse_and_round_trip():
    assert split_cut("random:test_resnet") == ("random:test_resnet", None)
    assert split_cut("file:/a@b/w.pth#resnet18,norm=imagenet@2") == (
        "file:/a@b/w.pth#resnet18,norm=imagenet",
        2,
    )
    spec = _one("random:test_efficientnet@2")
    assert (spec.id, spec.arch, spec.cut) == ("random:test_efficientnet@2", "test_efficientnet", 2)
    assert "control" in spec.tags and spec.weights.imagenet_top1 is None
    assert BackboneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert resolve_backbones(spec.id) == [spec]
    assert parse_backbone_id("random:resnet18@2").id == "random:resnet18@2"
    # negative: from the end, written with the stage number; bare names and seeds work
    assert _one("random:test_resnet@-2").id == "random:test_resnet@3"
    assert _one("test_resnet@1").id == "random:test_resnet@1"
    assert _one("random:test_resnet#seed=3@1").weights.location == "3"
    # whole networks keep the dict they had (and so their feature-cache keys)
    assert "cut" not in _one("random:test_resnet").to_dict()
    ids = [s.id for s in resolve_backbones("random:test_vit@3, random:test_vit@-3")]
    assert ids == ["random:test_vit@3"]


@pytest.mark.parametrize(
    "name, match",
    [
        ("random:test_resnet@4", r"5 feature stages.*last one is the\s+whole network"),
        ("random:test_resnet@-1", "from 0 to 3"),
        ("random:test_vit@9", "6 feature stages"),
        ("random:test_resnet@2@1", "already cut"),
    ],
)
def test_bad_cuts_say_what_is_allowed(name, match):
    with pytest.raises(ConfigError, match=match):
        resolve_backbones(name)


def test_an_architecture_timm_cannot_prune_is_named_with_the_fix():
    with pytest.raises(ConfigError, match=r"cannot cut 'Sequential'.*drop the\s+'@<stage>'"):
        cut_model(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), 1)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_features_are_the_pooled_stage_output(arch):
    whole = load_backbone(_one(f"random:{arch}"))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole_feats, whole_logits = forward_batch(whole, x)
    assert whole_logits is not None
    channels = stage_channels(arch)
    for k in range(len(channels) - 1):
        spec = _one(f"random:{arch}@{k}")
        model = load_backbone(spec)
        with torch.no_grad():
            feats, logits = forward_batch(model, x)
            # the stage's output as timm's own intermediates give it, pooled
            if arch == "test_vit":  # the class token after the final norm, as DINO probes
                out = whole.forward_intermediates(
                    x, indices=[k], norm=True, return_prefix_tokens=True, intermediates_only=True
                )
                expected = out[0][1][:, 0]
            else:
                stage = whole.forward_intermediates(x, indices=[k], intermediates_only=True)[0]
                expected = stage.mean(dim=(2, 3))
        assert feats.shape == (2, channels[k]) == (2, model.num_features)
        assert logits is None  # no source head: LEEP-like estimators skip the cut
        torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-4)
        info = candidate_info(spec)
        assert info.params == sum(p.numel() for p in model.parameters())
        assert info.params < candidate_info(_one(f"random:{arch}")).params


def _flops(model: torch.nn.Module, size: int = 64) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def test_a_cut_is_smaller_and_cheaper_than_the_whole():
    models = [load_backbone(_one(f"random:test_efficientnet@{k}")) for k in range(4)]
    models.append(load_backbone(_one("random:test_efficientnet")))
    params = [sum(p.numel() for p in m.parameters()) for m in models]
    flops = [_flops(m) for m in models]
    assert params == sorted(set(params)) and flops == sorted(set(flops)), (params, flops)


def test_cache_key_differs_and_the_cache_serves_the_cut(folder, tmp_path):
    ds = autotransfer.open_folder(folder)
    kw = dict(resolution=32, num_workers=0, cache_dir=tmp_path)
    whole = extract_features(ds, _one("random:test_resnet"), **kw)
    cut = extract_features(ds, _one("random:test_resnet@2"), **kw)
    again = extract_features(ds, _one("random:test_resnet@2"), **kw)
    assert whole.key != cut.key == again.key
    assert cut.features.shape == (len(ds.train), 48) and cut.logits is None
    assert again.from_cache and np.array_equal(again.features, cut.features)


def test_cuts_setting_is_checked():
    assert RankSettings(cuts=[2, -2]).cuts == (2, -2)
    assert FitSettings(n_trials=1, cuts=3).cuts == (3,)
    assert FitSettings.from_dict(FitSettings(n_trials=1, cuts=(2,)).to_dict()).cuts == (2,)
    with pytest.raises(ConfigError, match="-1: the last stage is the whole network"):
        RankSettings(cuts=(-1,))
    with pytest.raises(ConfigError, match="stage numbers"):
        RankSettings(cuts="2,3")


def test_with_cuts_skips_stages_an_architecture_lacks():
    specs = resolve_backbones("random:test_resnet, random:test_vit")
    ids = [s.id for s in with_cuts(specs, (4, -3))]
    # test_resnet has stages 0-4 (4 is the whole), test_vit 0-5
    assert ids == ["random:test_resnet", "random:test_resnet@2", "random:test_vit",
                   "random:test_vit@4", "random:test_vit@3"]  # fmt: skip


def test_rank_with_cuts_scores_the_extra_candidates(folder, tmp_path):
    from autotransfer.config import ExtractionSettings

    r = autotransfer.rank(
        folder,
        backbones=["random:test_resnet", "random:test_efficientnet"],
        cuts=(2, -2),
        top_k=6,
        extraction=ExtractionSettings(resolution=32, num_workers=0, cache_dir=tmp_path),
        progress=False,
    )
    rows = {row.backbone: row for row in r.rows}
    assert set(rows) == {
        "random:test_resnet",
        "random:test_resnet@2",
        "random:test_resnet@3",
        "random:test_efficientnet",
        "random:test_efficientnet@2",
        "random:test_efficientnet@3",
    }
    assert rows["random:test_resnet@3"].feature_dim == 192
    assert rows["random:test_efficientnet@2"].feature_dim == 32
    for name, row in rows.items():
        cut = "@" in name
        assert np.isnan(row.scores["leep"]) == cut  # no source head on a cut: skipped
        # every estimator that reads features alone scores the cut
        for est in (r.obj for r in plugins.registered("estimators").values()):
            if est.needs_features and not est.needs_logits:
                assert np.isfinite(row.scores[est.name]), (name, est.name, row.scores)
        assert row.params_m is not None


def test_cli_takes_cuts(folder, tmp_path, capsys):
    from autotransfer.cli.main import main

    args = ["rank", str(folder), "--backbones", "random:test_resnet", "--resolution", "32"]
    args += ["--workers", "0", "--cache-dir", str(tmp_path), "--json", "--cuts=-2,1"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    ids = {row["backbone"] for row in rows}
    assert ids == {"random:test_resnet", "random:test_resnet@3", "random:test_resnet@1"}


def _fit(folder, tmp_path, **options):
    """``fit`` with ``options`` into ``tmp_path/run``: no time budget, no trackers, no loader
    workers, 32 px."""
    return autotransfer.fit(
        folder,
        time_budget=None,
        trackers=(),
        resolution=32,
        num_workers=0,
        run_dir=str(tmp_path / "run"),
        progress=False,
        **options,
    )


def test_fit_with_cuts_searches_the_cut_candidates(folder, tmp_path):
    result = _fit(
        folder,
        tmp_path,
        backbones=("random:test_resnet",),
        cuts=(2,),
        top_k=2,
        strategies=("feature_extraction",),
        n_trials=2,
    )
    both = {"random:test_resnet", "random:test_resnet@2"}
    assert set(result.ranking.shortlist) == both
    assert {t.backbone for t in result.leaderboard if t.state == "complete"} == both


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize(
    "backbone, strategies",
    [("random:test_efficientnet@2", STRATEGIES), ("random:test_vit@3", ("discriminative_lr",))],
)
def test_fit_each_strategy_on_a_cut_and_the_saved_model_round_trips(
    folder, tmp_path, backbone, strategies
):
    (spec,) = resolve_backbones(backbone)
    result = _fit(
        folder, tmp_path, backbones=(backbone,), strategies=strategies, n_trials=len(strategies)
    )
    done = {t.strategy for t in result.leaderboard if t.state == "complete"}
    assert done == set(strategies), [(t.strategy, t.state, t.error) for t in result.leaderboard]
    assert {t.backbone for t in result.leaderboard} == {backbone}
    clf = result.model
    assert clf.cut == spec.cut
    assert clf.module.num_features == stage_channels(spec.arch)[spec.cut]

    images = sorted(str(p) for p in folder.rglob("*.png"))[:6]
    saved = result.save(tmp_path / "saved")
    assert json.loads((saved / "autotransfer.json").read_text())["cut"] == spec.cut
    loaded = autotransfer.load(saved).model
    assert isinstance(loaded, Classifier) and loaded.cut == spec.cut
    np.testing.assert_allclose(
        loaded.predict_proba(images, device="cpu"), clf.predict_proba(images, device="cpu"),
        atol=1e-6,
    )  # fmt: skip
    assert loaded.predict(images, device="cpu") == clf.predict(images, device="cpu")
    # the run folder's own model, as fit saved it, loads the cut too
    assert autotransfer.load(tmp_path / "run").model.cut == spec.cut

    ts = loaded.export_torchscript(tmp_path / "cut.torchscript.pt")
    traced = torch.jit.load(str(ts))
    x = torch.rand(2, 3, 32, 32)
    mean, std = (
        torch.tensor(v).view(1, 3, 1, 1) for v in (clf.preprocessing.mean, clf.preprocessing.std)
    )
    with torch.no_grad():
        torch.testing.assert_close(traced(x), loaded.module.cpu().eval()((x - mean) / std))
