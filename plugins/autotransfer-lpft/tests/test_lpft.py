"""autotransfer-lpft as installed (``pip install -e plugins/autotransfer-lpft``): found
through its entry point, true to the strategy contract, a correct probe, and a real fit."""

from __future__ import annotations

import autotransfer
import numpy as np
import pytest
import torch
from autotransfer import plugins
from autotransfer.api import open_folder
from autotransfer.backbones.inputs import data_config, eval_transform
from autotransfer.backbones.load import load_backbone
from autotransfer.data.images import load_image
from autotransfer.strategies.models import bn_modules
from autotransfer.testing.images import make_image_folder
from autotransfer.testing.strategies import StrategyContract, make_train_context

from autotransfer_lpft import LinearProbe, LinearProbeThenFinetune, fit_linear_probe
from autotransfer_lpft.strategy import probe_model

BACKBONES = ["random:test_resnet", "random:test_efficientnet"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """A feature cache of its own, no network, the installed plugins rediscovered."""
    monkeypatch.setenv("AUTOTRANSFER_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=10)


@pytest.fixture
def dataset(image_folder):
    return open_folder(image_folder, progress=False)


def test_registered_through_its_entry_point():
    reg = plugins.registered("strategies")["lp_ft"]
    assert reg.distribution == "autotransfer-lpft" and reg.plugin == "lpft"
    assert isinstance(reg.obj, LinearProbeThenFinetune)
    assert "lp_ft" in plugins.registered("strategies")  # next to the built-ins
    assert "full_finetune" in plugins.registered("strategies")


class TestContract(StrategyContract):
    def make_strategy(self):
        return LinearProbeThenFinetune()


def test_the_model_predicts_what_the_probe_predicts(dataset):
    """The LP stage is exact: the probe folded into the head of the real backbone gives the
    probe's scores on the images the features were extracted from."""
    ctx = make_train_context(dataset, {})
    tr, va = ctx.features("train"), ctx.features("val")
    probe = fit_linear_probe(tr.features, tr.labels, len(dataset.classes), C=0.5)
    model = probe_model(ctx, probe).eval()
    transform = eval_transform(data_config(ctx.spec, ctx.resolution))  # the cache's view
    x = torch.stack([transform(load_image(r.path)) for r in dataset.split("val")])
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_allclose(logits, probe.logits(va.features), rtol=1e-4, atol=1e-4)
    assert (logits.argmax(1) == probe.predict(va.features)).all()
    assert probe.accuracy(va.features, va.labels) == 1.0  # the classes are easy


def test_probe_is_scikit_learns_logistic_regression(dataset):
    from sklearn.linear_model import LogisticRegression

    ctx = make_train_context(dataset, {})
    x, y = ctx.features("train").features, ctx.features("train").labels
    v = ctx.features("val").features
    mu = x.mean(0)
    scale = np.sqrt(((x - mu) ** 2).mean())
    clf = LogisticRegression(C=0.5, max_iter=2000).fit((x - mu) / scale, y)
    probe = fit_linear_probe(x, y, 3, C=0.5)
    np.testing.assert_allclose(
        probe.logits(v), clf.decision_function((v - mu) / scale), rtol=1e-3, atol=1e-3
    )
    # two classes of three seen: sklearn's one row becomes two, the third is never chosen
    seen = y != 1
    mu2 = x[seen].mean(0)
    scale2 = np.sqrt(((x[seen] - mu2) ** 2).mean())
    clf2 = LogisticRegression(C=0.5, max_iter=2000).fit((x[seen] - mu2) / scale2, y[seen])
    two = fit_linear_probe(x[seen], y[seen], 3, C=0.5)
    assert isinstance(two, LinearProbe) and two.weight.shape == (3, x.shape[1])
    margin = two.logits(v)[:, 2] - two.logits(v)[:, 0]
    np.testing.assert_allclose(
        margin, clf2.decision_function((v - mu2) / scale2), rtol=1e-3, atol=1e-3
    )
    assert set(two.predict(v).tolist()) <= {0, 2}


def test_fine_tuning_starts_from_the_probe(dataset):
    ctx = make_train_context(dataset, {"C": 1.0, "lr": 1e-9, "epochs": 1, "weight_decay": 0.0})
    probe = fit_linear_probe(ctx.features("train").features, ctx.features("train").labels, 3, C=1.0)
    out = LinearProbeThenFinetune().train(ctx)
    head = out.model.get_classifier()
    np.testing.assert_allclose(head.weight.detach().numpy(), probe.weight, rtol=1e-4, atol=1e-5)
    assert out.info["probe_val_accuracy"] == 1.0 and out.val_accuracy == 1.0


def test_fine_tuning_trains_every_weight_and_keeps_batchnorm_statistics(dataset):
    ctx = make_train_context(dataset, {"C": 1.0, "lr": 0.01, "epochs": 2, "weight_decay": 0.0})
    before = load_backbone(ctx.spec)
    out = LinearProbeThenFinetune().train(ctx)
    assert out.info["epochs_run"] == 2
    for bn_before, bn_after in zip(bn_modules(before), bn_modules(out.model)):
        assert torch.equal(bn_before.running_mean, bn_after.running_mean)
        assert torch.equal(bn_before.running_var, bn_after.running_var)
    trained = dict(out.model.named_parameters())
    changed = [n for n, p in before.named_parameters() if n in trained and
               not torch.equal(p, trained[n].detach())]  # fmt: skip
    assert any(n.startswith(("conv1", "stem")) for n in changed), changed  # the backbone too


def test_lp_ft_trials_run_in_a_fit(image_folder, tmp_path):
    result = autotransfer.fit(
        image_folder,
        backbones=BACKBONES,
        strategies=("lp_ft", "feature_extraction"),
        n_trials=4,
        time_budget=None,
        trial_time_limit=15,  # seconds: lp_ft's deadline shortens its schedule
        trackers=(),
        run_dir=str(tmp_path / "run"),
        resolution=32,
        progress=False,
    )
    lpft = [r for r in result.leaderboard if r.strategy == "lp_ft"]
    assert lpft and all(r.state == "complete" for r in lpft)
    assert all(r.history and 0.0 <= r.val_accuracy <= 1.0 for r in lpft)
    assert set(lpft[0].params) == {"C", "lr", "epochs", "weight_decay"}
    assert lpft[0].info["probe_val_accuracy"] >= 0.0
    assert "lp_ft" in result.leaderboard_table()
    assert {r.strategy for r in result.leaderboard} == {"lp_ft", "feature_extraction"}
