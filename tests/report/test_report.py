"""The report of a real tiny fit (real Optuna study, real MLflow store): every section
holds the run's own numbers, the page needs nothing from outside, dataset strings cannot
inject markup, and the page is logged to the fit's MLflow parent run."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil

import pytest

# MLflow reports usage unless told not to; tests never touch the network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import autotransfer  # noqa: E402
from autotransfer.cli import main  # noqa: E402
from autotransfer.errors import ConfigError  # noqa: E402
from autotransfer.report import write_report  # noqa: E402
from autotransfer.report.markup import num  # noqa: E402
from autotransfer.testing.images import class_image, make_image_folder, write_image  # noqa: E402

NASTY = "<script>$1"  # a class folder name that is markup (and mathtext to matplotlib)
CLASSES = (NASTY, "cat", "dog")
TINY = dict(
    backbones=("random:test_resnet", "random:test_efficientnet"),
    resolution=32,
    time_budget=None,
    progress=False,
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tracked fit of a folder with train, val and test splits, and its report."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOTRANSFER_CACHE", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = make_image_folder(
            root / "data",
            classes=CLASSES,
            per_class=8,
            layout="split_folders",
            splits=("train", "val", "test"),
        )
        for i in range(2):  # cats labelled dog: mistakes for the grid, whatever the model
            write_image(data / "test" / "dog" / f"odd_{i}.png", class_image(1, rng=rng(i)))
        result = autotransfer.fit(
            data,
            run_dir=str(root / "run"),
            n_trials=3,
            trial_time_limit="3s",
            strategies=("feature_extraction", "partial_freeze"),
            **TINY,
        )
        path = write_report(result.run_dir)
    return result, path, path.read_text(encoding="utf-8")


def test_report_is_written_in_the_run_folder(fitted):
    result, path, page = fitted
    assert str(path.parent) == result.run_dir and path.name == "report.html"
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_header_names_the_dataset_and_the_pick(fitted):
    result, _, page = fitted
    b = result.best
    header = page[page.index("<header") : page.index("</header>")]
    assert "<h1>data</h1>" in header
    assert f"<b>{b.strategy}</b> on <b>{b.backbone}</b> · trial {b.number}" in header
    assert num(result.val_metrics["accuracy"]) in header
    assert num(result.test_metrics["accuracy"]) in header


def test_leaderboard_lists_every_trial_with_its_numbers(fitted):
    result, _, page = fitted
    board = _section(page, "leaderboard")
    assert [int(n) for n in re.findall(r'id="trial-(\d+)"', board)] == [
        r.number for r in result.leaderboard
    ]
    for r in result.leaderboard:
        row = board[board.index(f'id="trial-{r.number}"') :].split("</tr>", 1)[0]
        assert f">{r.state}<" in row and r.strategy in row and r.backbone in row
        assert f'<td class="num">{len(r.history)}</td>' in row  # epochs
        if r.val_accuracy is not None:
            assert f"<b>{num(r.val_accuracy)}</b>" in row
    assert f'<tr class="pick" id="trial-{result.best.number}"' in board


def test_ranking_shows_every_estimators_score_and_what_the_search_measured(fitted):
    result, _, page = fitted
    ranking = _section(page, "ranking")
    rk = result.ranking
    for est in rk.estimators:
        assert f'<th class="num">{est.replace("_", "_<wbr>")}</th>' in ranking
    best = {}
    for r in result.leaderboard:
        if r.val_accuracy is not None:
            best[r.backbone] = max(best.get(r.backbone, 0.0), r.val_accuracy)
    for row in rk.rows:
        cells = ranking[ranking.index(f'<td class="nowrap">{row.backbone}') :].split("</tr>", 1)[0]
        assert f"<b>{num(row.aggregate, 3)}</b>" in cells
        for est in rk.estimators:
            assert num(row.scores[est], 3) in cells
        if row.backbone in best:
            assert num(best[row.backbone]) in cells
    # how many images the scores came from
    assert rk.images and f"scores from all {rk.images} train images" in ranking


def test_descriptors_are_shown(fitted):
    result, _, page = fitted
    data = _section(page, "data")
    d = result.descriptor
    assert f"{d.num_images} (train 24, val 12, test 14)" in data
    for name, count in d.class_counts.items():
        assert f'<td>{_escaped(name)}</td><td class="num">{count}</td>' in data


def test_the_pick_is_scored_on_the_test_split_like_the_fit_scored_it(fitted):
    result, _, page = fitted
    pick = _section(page, "pick")
    assert "test (scored for this report)" in pick
    acc_row = pick[pick.index("<td>accuracy</td>") :].split("</tr>", 1)[0]
    val, fit_test, ours = re.findall(r'<td class="num">([^<]*)</td>', acc_row)
    assert val == num(result.val_metrics["accuracy"])
    assert fit_test == ours == num(result.test_metrics["accuracy"])  # the fit's and ours
    # per-class accuracy from predictions made here, independently of the report
    labels, paths = _test_split(result)
    predicted = result.predict(paths)
    for c in CLASSES:
        n = sum(t == c for t in labels)
        ok = sum(t == p == c for t, p in zip(labels, predicted))
        assert (
            f'<td>{_escaped(c)}</td><td class="num">{n}</td><td class="num">{ok}</td>'
            f'<td class="num">{num(ok / n, 3)}</td>'
        ) in pick
    mistakes = _section(page, "mistakes")
    wrong = [(t, p) for t, p in zip(labels, predicted) if t != p]
    assert mistakes.count('class="tile mistake"') == min(48, len(wrong))
    for t, p in wrong:
        assert f'<div class="t">{_escaped(t)}</div><div class="p">→ {_escaped(p)}</div>' in mistakes


def test_figures_are_inline_svg(fitted):
    _, _, page = fitted
    for key in ("estimators", "curves", "pick"):
        images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', _section(page, key))
        assert len(images) == 1, key
        svg = base64.b64decode(images[0]).decode("utf-8")
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


def test_page_is_self_contained(fitted):
    _, _, page = fitted
    lowered = page.lower()
    for outside in ('src="http', "src='http", 'href="http', "<link", "@import", "url(http"):
        assert outside not in lowered
    assert "<script" not in lowered  # no script at all, ours or injected
    assert "default-src 'none'" in page  # and the browser is told so
    assert re.findall(r'src="([a-z]+):', page) == ["data"] * len(re.findall(r'src="', page))


def test_dataset_strings_are_escaped(fitted):
    _, _, page = fitted
    assert NASTY not in page
    assert _escaped(NASTY) in page


def test_report_is_an_artifact_of_the_fits_mlflow_parent_run(fitted, tmp_path):
    import mlflow

    result, _, page = fitted
    t = result.tracking
    client = mlflow.MlflowClient(t["tracking_uri"])
    paths = [a.path for a in client.list_artifacts(t["parent_run_id"], "report")]
    assert paths == ["report/report.html"]
    local = client.download_artifacts(t["parent_run_id"], "report/report.html", str(tmp_path))
    with open(local, encoding="utf-8") as f:
        assert f.read() == page


def test_cli_writes_where_asked_and_prints_the_path(fitted, tmp_path, capsys):
    result, _, _ = fitted
    out = tmp_path / "deep" / "r.html"
    assert main(["-q", "report", result.run_dir, "-o", str(out), "--no-mlflow"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert f"trial {result.best.number}" in out.read_text(encoding="utf-8")


def test_untracked_fit_without_test_split_is_reported_on_validation(tmp_path, caplog):
    data = make_image_folder(tmp_path / "plain", classes=("a", "b"), per_class=6)
    result = autotransfer.fit(
        data,
        run_dir=str(tmp_path / "run"),
        n_trials=1,
        trackers=(),
        strategies=("feature_extraction",),
        **{**TINY, "backbones": ("random:test_resnet",)},
    )
    with caplog.at_level(logging.INFO, logger="autotransfer"):
        page = result.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "not tracked in MLflow" in caplog.text
    assert "val (scored for this report)" in page and "no test split" in page
    # the data moved away: the rest of the report is still written, and says why not all
    shutil.move(str(data), str(tmp_path / "elsewhere"))
    page = write_report(result.run_dir, tmp_path / "r2.html").read_text(encoding="utf-8")
    assert "No confusion matrix:" in page and 'id="trial-0"' in page


def test_a_folder_without_a_fit_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not the run folder of a fit"):
        write_report(tmp_path)


def rng(seed: int):
    import numpy as np

    return np.random.default_rng(1000 + seed)


def _section(page: str, key: str) -> str:
    start = page.index(f'<section id="{key}">')
    return page[start : page.index("</section>", start)]


def _escaped(s: str) -> str:
    from html import escape

    return escape(s, quote=True)


def _test_split(result):
    from pathlib import Path

    root = Path(result.descriptor.root) / "test"
    pairs = sorted((p.parent.name, str(p)) for p in root.rglob("*.*"))
    return [c for c, _ in pairs], [p for _, p in pairs]
