"""The Selenium driver of the browser tests on a page of its own: its viewport is the size
asked for, it waits for a script-rendered element, reads text and DOM, clicks with the
mouse, saves PNGs of the viewport, a region and the whole page, reports a page that never
renders with what it shows, fails at once when Chromium cannot start, and finds (or says it
lacks) Chromium and chromedriver."""

from __future__ import annotations

import struct

import pytest
from selenium.common.exceptions import SessionNotCreatedException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from .driver import (
    Binaries,
    chromium_or_skip,
    find_chromedriver,
    find_chromium,
    screenshot,
    shows_text,
    start,
    text,
    wait_for,
)

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


def test_driver_waits_reads_clicks_and_screenshots(browser, tmp_path):
    (tmp_path / "page.html").write_text(PAGE)
    driver = browser(width=800, height=600)
    driver.get((tmp_path / "page.html").as_uri())
    assert wait_for(driver, shows_text("rendered later")) is True
    assert driver.execute_script("return [innerWidth, innerHeight]") == [800, 600]
    assert "top" in text(driver) and '<p id="late">rendered later</p>' in driver.page_source
    button = driver.find_element(By.ID, "b")
    button.click()
    wait_for(driver, shows_text("clicked 1"))
    ActionChains(driver).double_click(button).perform()
    wait_for(driver, shows_text("clicked 2"))
    view = screenshot(driver, tmp_path / "view.png")
    region = screenshot(driver, tmp_path / "region.png", between="#top, #b")
    full = screenshot(driver, tmp_path / "full.png", full_page=True)
    with pytest.raises(TimeoutException, match="did not render within 1s(?s:.*)rendered later"):
        wait_for(driver, "document.getElementById('never')", timeout=1)
    with pytest.raises(ValueError, match="Nothing on the page matches"):
        screenshot(driver, tmp_path / "never.png", between="#never")
    assert _png_size(view) == (800, 600)
    width, height = _png_size(region)
    assert width == 800 and 300 < height < 400  # from the top div to the button
    assert _png_size(full)[1] > 1800


def test_a_browser_that_does_not_start_says_so(chromium):
    with pytest.raises(SessionNotCreatedException, match="Chrome instance exited"):
        start(Binaries("/bin/false", chromium.chromedriver))


def test_finding_the_binaries_honours_the_variables(monkeypatch):
    monkeypatch.setenv("AUTOTRANSFER_CHROMIUM", "/no/such/chromium")
    monkeypatch.setenv("AUTOTRANSFER_CHROMEDRIVER", "/no/such/chromedriver")
    assert find_chromium() is None and find_chromedriver() is None
    monkeypatch.delenv("AUTOTRANSFER_CHROMIUM")
    monkeypatch.delenv("AUTOTRANSFER_CHROMEDRIVER")
    found = find_chromium()
    assert found is None or found.endswith(("chromium", "chromium-browser", "chrome", "stable"))
    found = find_chromedriver()
    assert found is None or found.endswith("chromedriver")


def test_missing_binaries_skip_the_test_but_fail_it_in_ci(monkeypatch):
    monkeypatch.setenv("AUTOTRANSFER_CHROMIUM", "/no/such/chromium")
    monkeypatch.setenv("AUTOTRANSFER_CHROMEDRIVER", "/no/such/chromedriver")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no Chromium .* and no chromedriver"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the browser tests must run"):
        chromium_or_skip()
