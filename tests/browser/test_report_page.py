"""`autotransfer report RUN_DIR` on a real tiny fit, opened from its file in headless
Chromium: every section is rendered with the run's own numbers, its figures are drawn
with a size, and a screenshot is kept as a test artifact."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from autotransfer.cli import main

from .driver import screenshot, text, wait_for

SECTIONS = {
    "data": "Data",
    "ranking": "Ranking",
    "estimators": "Estimators vs accuracy",
    "leaderboard": "Leaderboard",
    "curves": "Learning curves",
    "pick": "The pick",
    "mistakes": "Misclassified",
}

# every section's heading and height, and the decoded and drawn size of its figures
# (SVG in data: URLs, so a figure that does not parse has no natural size)
SHOWN = """(() => {
  const out = {};
  for (const s of document.querySelectorAll('main section[id]')) {
    const h = s.querySelector('h2'), r = s.getBoundingClientRect();
    out[s.id] = {title: h ? h.innerText.trim() : null, height: r.height,
                 figures: [...s.querySelectorAll('figure img')].map(i => {
                   const b = i.getBoundingClientRect();
                   return [i.naturalWidth, i.naturalHeight, b.width, b.height]; })};
  }
  return JSON.stringify(out);
})()"""
LOADED = (
    "document.readyState === 'complete' && !!document.querySelector('main section') && "
    "[...document.images].every(i => i.complete)"
)


@pytest.fixture(scope="module")
def report(fitted, tmp_path_factory):
    """The page written by the command ``autotransfer report RUN_DIR --output ...`` (run in
    this process: a new interpreter would import torch again), also logged to the fit's
    MLflow run."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["report", str(fitted.run_dir), "--output", str(out), "--device", "cpu"])
    assert rc == 0 and printed.getvalue().strip() == str(out)
    return out


def test_report_renders_every_section(browser, fitted, report, keep):
    driver = browser(width=1400, height=1000)
    driver.get(report.as_uri())
    wait_for(driver, LOADED)
    shown = json.loads(driver.execute_script(f"return {SHOWN}"))
    page_text = text(driver)
    shot = screenshot(driver, keep("report.png"))
    full = screenshot(driver, keep("report-full.png"), full_page=True)

    assert {k: v["title"] for k, v in shown.items()} == SECTIONS
    assert all(v["height"] > 40 for v in shown.values()), shown
    # the estimators' scatter, the learning curves and the confusion matrix are drawn
    for key in ("estimators", "curves", "pick"):
        assert shown[key]["figures"], f"no figure in {key}: {shown[key]}"
        for natural_w, natural_h, w, h in shown[key]["figures"]:
            assert natural_w > 0 and natural_h > 0, f"a figure in {key} did not decode"
            assert w > 200 and h > 100, f"a figure in {key} is drawn {w}x{h}"
    b = fitted.best
    assert f"{b.strategy} on {b.backbone}" in page_text  # the header's pick line
    for trial in fitted.leaderboard:  # every trial in the leaderboard
        assert trial.backbone in page_text and trial.strategy in page_text
    for name in ("cat", "dog", "owl"):  # per-class accuracy of the pick
        assert name in page_text
    assert shot.stat().st_size > 10_000 and full.stat().st_size >= shot.stat().st_size // 2
