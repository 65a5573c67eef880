"""What each built-in strategy does differently: what it freezes, which learning rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autotransfer import plugins
from autotransfer.strategies.stages import stage_groups
from autotransfer.testing.strategies import make_train_context


def test_feature_extraction_folds_the_probe_into_the_head(dataset):
    from sklearn.linear_model import LogisticRegression

    ctx = make_train_context(dataset, {"C": 0.5})
    out = plugins.lookup("strategies", "feature_extraction").train(ctx)
    tr, va = ctx.features("train"), ctx.features("val")
    mu, sd = tr.features.mean(0), tr.features.std(0) + 1e-6
    probe = LogisticRegression(C=0.5, max_iter=2000).fit((tr.features - mu) / sd, tr.labels)
    expected = probe.predict_proba((va.features - mu) / sd)
    head = out.model.get_classifier()
    with torch.no_grad():
        logits = head(torch.from_numpy(va.features))
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), expected, atol=1e-4)


def test_partial_freeze_trains_only_the_top_stages(dataset):
    from autotransfer.backbones.load import load_backbone

    ctx = make_train_context(dataset, {"stages": 1, "lr": 0.05, "epochs": 2, "weight_decay": 1e-5})
    out = plugins.lookup("strategies", "partial_freeze").train(ctx)
    before = load_backbone(ctx.spec).state_dict()
    after = out.model.state_dict()
    groups = stage_groups(out.model)
    trained_modules = {n.rsplit(".", 1)[0] for n in groups[-2] + groups[-1]}
    changed = {k for k, v in after.items() if k not in before or not torch.equal(v, before[k])}
    assert changed
    assert all(k.rsplit(".", 1)[0] in trained_modules for k in changed), changed
    # the stem and lower stages, BatchNorm statistics included, are untouched
    for name in groups[0]:
        mod = name.rsplit(".", 1)[0]
        for key in (name, f"{mod}.running_mean", f"{mod}.running_var"):
            if key in before:
                assert torch.equal(after[key], before[key]), key


def test_discriminative_lr_decays_from_the_head_down(dataset):
    from autotransfer.strategies import loop

    seen = {}
    original = loop.train

    def spy(ctx, build, schedule, prep):
        t = build()
        seen["lrs"] = [g["lr"] for g in t.param_groups]
        return original(ctx, lambda: t, schedule, prep)

    ctx = make_train_context(dataset, {"lr": 0.1, "decay": 0.5, "epochs": 1, "weight_decay": 0.0})
    strat = plugins.lookup("strategies", "discriminative_lr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "train", spy)
        strat.train(ctx)
    lrs = seen["lrs"]
    assert lrs[-1] == pytest.approx(0.1)
    assert lrs == pytest.approx([0.1 * 0.5**i for i in range(len(lrs))][::-1])


def test_full_finetune_defaults_follow_the_hyperrule(dataset):
    from autotransfer.testing.strategies import search_context

    s = plugins.lookup("strategies", "full_finetune")
    d = s.defaults(search=search_context(dataset))
    assert d["lr"] == 0.003 and d["decay"] == "step" and d["mixup_alpha"] == 0.0
    big = search_context(dataset)
    import dataclasses

    big = dataclasses.replace(big, num_train=100_000, batch_size=128)
    d = s.defaults(search=big)
    assert d["mixup_alpha"] == 0.1 and d["freeze_bn"] is False
    # BiT's 10k steps of 512 images: 51.2 epochs of 782 steps at batch 128
    assert d["steps"] == 40_039


def test_freezable_bn_leaves_out_layers_with_near_zero_running_variance():
    from autotransfer.strategies.models import freezable_bn

    healthy = torch.nn.BatchNorm2d(3)
    dead = torch.nn.BatchNorm2d(3)  # eps 1e-5: a channel of variance 1e-6 gains x300 frozen
    dead.running_var[1] = 1e-6
    tf_style = torch.nn.BatchNorm2d(3, eps=1e-3)  # TensorFlow's eps bounds the gain
    tf_style.running_var.zero_()
    assert freezable_bn(torch.nn.Sequential(healthy, dead, tf_style)) == [healthy, tf_style]


def test_full_finetune_with_frozen_bn_lets_near_dead_layers_use_batch_statistics(dataset):
    import autotransfer.strategies.full_finetune as ff
    from autotransfer.strategies.models import bn_modules

    original, before = ff.new_classifier, {}

    def with_a_near_dead_channel(ctx):
        model = original(ctx)
        bns = bn_modules(model)
        bns[1].running_var[0] = 1e-6
        before.update(
            {i: (bn.running_mean.clone(), bn.running_var.clone()) for i, bn in enumerate(bns)}
        )
        return model

    ctx = make_train_context(
        dataset, {"lr": 0.05, "epochs": 1, "freeze_bn": True, "mixup_alpha": 0.0}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ff, "new_classifier", with_a_near_dead_channel)
        out = plugins.lookup("strategies", "full_finetune").train(ctx)
    after = bn_modules(out.model)
    assert len(after) == len(before) > 2
    # the near-dead layer trained on batch statistics, which moved its running ones...
    assert not torch.equal(after[1].running_var, before[1][1])
    # ...while every other layer kept the statistics it came with
    for i, bn in enumerate(after):
        if i != 1:
            assert torch.equal(bn.running_mean, before[i][0]), i
            assert torch.equal(bn.running_var, before[i][1]), i
