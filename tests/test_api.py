import json

import pytest

import autotransfer
from autotransfer.cli import main
from autotransfer.errors import ConfigError, UnknownNameError

EX = autotransfer.ExtractionSettings(resolution=48, num_workers=0)


def test_rank_scores_every_backbone_with_every_estimator(
    image_folder, tiny_backbones, builtin_estimator_names
):
    r = autotransfer.rank(
        image_folder, backbones=tiny_backbones, top_k=1, extraction=EX, hedge=False
    )
    assert {row.backbone for row in r.rows} == set(tiny_backbones)
    assert r.shortlist == [r.rows[0].backbone] and len(r.shortlist) == 1
    assert [row.rank for row in r.rows] == [1, 2]
    assert r.rows[0].aggregate >= r.rows[1].aggregate
    for name in builtin_estimator_names:
        assert name in r.estimators
    assert "imagenet_top1" not in r.aggregate_estimators  # the prior is the baseline
    for row in r.rows:
        assert row.images == 24 and row.feature_dim > 0 and not row.from_cache
        assert set(row.scores) == set(r.estimators)


def test_rank_hedges_a_one_family_top_k_with_another_family(image_folder, tiny_backbones):
    # a ResNet and an EfficientNet: whichever ranks first, the other is another family's best
    r = autotransfer.rank(image_folder, backbones=tiny_backbones, top_k=1, extraction=EX)
    assert r.shortlist == [r.rows[0].backbone, r.rows[1].backbone]
    assert r.hedged == r.rows[1].backbone


def test_second_rank_is_served_from_the_cache(image_folder, tiny_backbones):
    first = autotransfer.rank(image_folder, backbones=tiny_backbones, extraction=EX)
    second = autotransfer.rank(image_folder, backbones=tiny_backbones, extraction=EX)
    assert all(row.from_cache for row in second.rows)
    assert all(v == 0.0 for row in second.rows for v in row.score_seconds.values())
    assert first.to_dict()["rows"][0]["scores"] == second.to_dict()["rows"][0]["scores"]


def test_rank_rejects_bad_settings(image_folder, tiny_backbones):
    with pytest.raises(ConfigError, match="top_k"):
        autotransfer.rank(image_folder, backbones=tiny_backbones, top_k=0)
    with pytest.raises(UnknownNameError, match="Did you mean 'logme'"):
        autotransfer.rank(
            image_folder, backbones=tiny_backbones, estimators=["logmee"], extraction=EX
        )
    with pytest.raises(ConfigError, match="resolution"):
        autotransfer.ExtractionSettings(resolution=4)


def test_cli_rank_and_describe(image_folder, tiny_backbones, capsys):
    args = ["--backbones", ",".join(tiny_backbones), "--resolution", "48", "--workers", "0"]
    assert main(["rank", str(image_folder), *args, "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "shortlist:" in out and "logme" in out and tiny_backbones[0] in out
    assert main(["describe", str(image_folder), *args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_classes"] == 3 and set(d["source_similarity"]) == set(tiny_backbones)


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    assert main(["describe", str(tmp_path / "missing"), "--no-similarity"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_describe_without_any_offline_backbone_still_describes(image_folder, monkeypatch, caplog):
    import autotransfer.api as api

    def nothing_offline(names=None, **kwargs):
        raise autotransfer.WeightsUnavailableError("No pretrained backbone is available offline.")

    monkeypatch.setattr(api, "candidate_backbones", nothing_offline)
    d = autotransfer.describe(image_folder)
    assert d.num_classes == 3 and d.source_similarity == {}
    assert "No source similarity" in caplog.text
    with pytest.raises(autotransfer.WeightsUnavailableError):
        autotransfer.describe(image_folder, backbones=["timm:resnet50.a1_in1k"])


def test_rank_within_a_time_limit_scores_cached_candidates_first_and_lists_the_rest(
    image_folder, tiny_backbones
):
    cached, other = tiny_backbones[1], tiny_backbones[0]
    autotransfer.rank(image_folder, backbones=[cached], extraction=EX)
    # a limit already spent: the cached candidate costs nothing, the other is left out
    r = autotransfer.rank(image_folder, backbones=tiny_backbones, extraction=EX, time_limit=1e-9)
    assert [row.backbone for row in r.rows] == [cached] and r.shortlist == [cached]
    assert list(r.skipped) == [other] and "share of the time budget" in r.skipped[other]
    assert f"not ranked: {other}" in r.table()
    again = type(r).from_dict(json.loads(r.to_json()))
    assert again.skipped == r.skipped


def test_rank_with_no_time_to_read_features_orders_candidates_by_the_prior(
    image_folder, tiny_backbones
):
    """The limit is kept inside extraction: with none left, no candidate is extracted,
    each is listed as stopped, and the shortlist comes from the feature-free prior."""
    r = autotransfer.rank(image_folder, backbones=tiny_backbones, extraction=EX, time_limit=1e-9)
    assert {row.backbone for row in r.rows} == set(tiny_backbones)
    assert all(row.images == 0 for row in r.rows) and r.images == 0
    assert set(r.skipped) == set(tiny_backbones)
    assert all("stopped: no time left" in why for why in r.skipped.values())
    assert r.shortlist


def test_rank_with_time_enough_scores_every_candidate(image_folder, tiny_backbones):
    r = autotransfer.rank(image_folder, backbones=tiny_backbones, extraction=EX, time_limit=600)
    assert {row.backbone for row in r.rows} == set(tiny_backbones) and not r.skipped


def test_uncached_candidates_are_scored_in_order_of_published_imagenet_accuracy(image_folder):
    from autotransfer.backbones.spec import BackboneSpec, WeightsRef
    from autotransfer.transferability.rank import _cached_then_likeliest

    def spec(name, top1):
        return BackboneSpec(
            f"random:{name}", "test_resnet", WeightsRef("random", imagenet_top1=top1)
        )

    specs = [spec("a", None), spec("b", 70.0), spec("c", 80.0), spec("d", 70.0)]
    ds = autotransfer.open_folder(image_folder)
    order = _cached_then_likeliest(ds, specs, EX)
    assert [s.id for s in order] == ["random:c", "random:b", "random:d", "random:a"]


def test_rank_share_must_be_a_share():
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="rank_share"):
            autotransfer.FitSettings(rank_share=bad)


def test_rank_scores_a_stratified_sample_and_says_so(image_folder, tiny_backbones):
    r = autotransfer.rank(
        image_folder, backbones=tiny_backbones, extraction=EX, sample_size=12, sample_per_class=4
    )
    assert r.images == 12 and r.split_images == 24
    assert all(row.images == 12 for row in r.rows)
    assert "scores from a stratified sample of 12 of the 24 train images" in r.table()
    again = type(r).from_dict(json.loads(r.to_json()))
    assert (again.images, again.split_images) == (12, 24)
    whole = autotransfer.rank(image_folder, backbones=tiny_backbones[:1], extraction=EX)
    assert whole.images == whole.split_images == 24 and "all 24 train images" in whole.table()


def test_a_slow_estimator_does_not_make_rank_overrun_its_time_limit(
    image_folder, tiny_backbones, slow_estimator
):
    import time

    t0 = time.monotonic()
    r = autotransfer.rank(
        image_folder,
        backbones=tiny_backbones,
        estimators=["knn_loo_k1", "slow_estimator", "imagenet_top1"],
        extraction=EX,
        time_limit=4.0,
    )
    assert time.monotonic() - t0 < 4.0 + 3.0  # the estimator sleeps 600 s
    assert "did not finish" in next(iter(r.skipped.values()))
    assert "slow_estimator" in " ".join(r.skipped.values())


@pytest.fixture(scope="module")
def larger_folder(tmp_path_factory):
    """600 training images: more than the ranking's pilot (RANK_PILOT_SIZE, 500)."""
    from autotransfer.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("larger") / "data"
    return make_image_folder(root, classes=("a", "b", "c"), per_class=250, size=(16, 16))


def test_under_a_short_time_the_ranking_sample_is_the_pilot(larger_folder, tiny_backbones):
    from autotransfer.config import RANK_PILOT_SIZE

    r = autotransfer.rank(
        larger_folder, backbones=tiny_backbones, extraction=EX, sample_seconds=1e-6
    )
    assert (r.images, r.split_images, r.pilot) == (RANK_PILOT_SIZE, 600, 0)
    assert all(row.images == RANK_PILOT_SIZE for row in r.rows)


def test_with_time_the_ranking_sample_grows_past_the_pilot_up_to_its_cap(
    larger_folder, tiny_backbones, tmp_path, caplog
):
    import logging

    from autotransfer.backbones.candidates import candidate_backbones
    from autotransfer.backbones.extraction import extract_all
    from autotransfer.data.sample import sample_parts

    ex = autotransfer.ExtractionSettings(resolution=48, num_workers=0, cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="autotransfer"):
        r = autotransfer.rank(
            larger_folder,
            backbones=tiny_backbones,
            extraction=ex,
            sample_size=560,
            sample_seconds=1e6,
        )
    # the second backbone read both parts' images as the first decoded them
    assert "2 passes read the images decoded by an earlier pass" in caplog.text
    assert (r.images, r.pilot) == (560, 500)
    assert all(row.images == 560 for row in r.rows)
    assert "sample of 560 of the 600 train images (sized to the time from a pilot of 500)" in (
        r.table()
    )
    again = type(r).from_dict(json.loads(r.to_json()))
    assert again.pilot == 500
    # its parts are cached one by one: the search reads the same features back
    ds = autotransfer.open_folder(larger_folder)
    parts = sample_parts(ds, 560, None, 0, pilot=500)
    got = extract_all(parts, candidate_backbones(tiny_backbones), ex)
    assert all(fs.from_cache and len(fs) == 560 for fs in got.values())
