"""The Chromium helper on a page of its own: it waits for a script-rendered element, reads
text and DOM, clicks with the mouse, saves PNGs of the viewport, a region and the whole
page, reports a page that never renders with what it shows, and says why it cannot
start."""

from __future__ import annotations

import struct

import pytest

from autotransfer.testing.browser import Browser, BrowserError, find_chromium, shows_text

PAGE = """<!doctype html><title>t</title><body style="margin:0">
<div id="top" style="height:300px">top</div>
<button id="b" onclick="document.getElementById('out').textContent = 'clicked ' + event.detail">
press</button><p id="out"></p>
<div id="bottom" style="height:1500px">bottom</div>
<script>setTimeout(() => { const p = document.createElement('p');
  p.id = 'late'; p.textContent = 'rendered later'; document.body.appendChild(p); }, 300);
</script>"""


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_page_waits_reads_clicks_and_screenshots(chromium, tmp_path):
    (tmp_path / "page.html").write_text(PAGE)
    with Browser(binary=chromium, width=800, height=600) as browser:
        page = browser.open((tmp_path / "page.html").as_uri())
        assert page.wait_for(shows_text("rendered later")) is True
        assert "top" in page.text() and '<p id="late">rendered later</p>' in page.html()
        page.click("#b")
        page.wait_for(shows_text("clicked 1"))
        page.click("#b", count=2)
        page.wait_for(shows_text("clicked 2"))
        view = page.screenshot(tmp_path / "view.png")
        region = page.screenshot(tmp_path / "region.png", between="#top, #b")
        full = page.screenshot(tmp_path / "full.png", full_page=True)
        with pytest.raises(BrowserError, match="did not render within 1s(?s:.*)rendered later"):
            page.wait_for("document.getElementById('never')", timeout=1)
        with pytest.raises(BrowserError, match="JavaScript failed"):
            page.evaluate("no_such_name")
        with pytest.raises(BrowserError, match="Nothing on the page matches"):
            page.click("#never")
    assert _png_size(view) == (800, 600)
    width, height = _png_size(region)
    assert width == 800 and 300 < height < 400  # from the top div to the button
    assert _png_size(full)[1] > 1800


def test_a_browser_that_does_not_start_says_so(tmp_path):
    with pytest.raises(BrowserError, match="closed its DevTools pipe"):
        Browser(binary="/bin/false").start()


def test_finding_chromium_honours_the_variable(monkeypatch):
    monkeypatch.setenv("AUTOTRANSFER_CHROMIUM", "/no/such/chromium")
    assert find_chromium() is None
    monkeypatch.delenv("AUTOTRANSFER_CHROMIUM")
    found = find_chromium()
    assert found is None or found.endswith(("chromium", "chromium-browser", "chrome", "stable"))
