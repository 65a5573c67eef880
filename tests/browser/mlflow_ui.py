"""Steps through MLflow's UI (the React app ``autotransfer ui`` serves) with Selenium: an
experiment's run table, a parent run expanded to show its trial runs, metric columns added,
cells read.

The selectors are MLflow 3's, in one place: the run table is an ag-grid whose rows carry the
run id (``[role=row][row-id=<run id>]``) and whose cells carry the column
(``col-id="metrics.`val_accuracy`"``); a parent run's row has the expander as its first
button; the "Columns" button opens a tree of attributes, metrics, parameters and tags.
An experiment opens on the GenAI overview unless the URL names its run table
(:func:`runs_url`).

>>> driver.get(runs_url(ui, "1"))                                   # doctest: +SKIP
>>> wait_for_runs(driver, [parent_id])                              # doctest: +SKIP
>>> expand(driver, parent_id, trial_ids)                            # doctest: +SKIP
>>> show_columns(driver, ["val_accuracy"])                          # doctest: +SKIP
>>> cells(driver, "metrics.`val_accuracy`")                          # doctest: +SKIP
{'d07375...': '-', '6396b5...': '1', ...}
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from .driver import wait_until

COLUMNS_BUTTON = (By.XPATH, "//button[normalize-space()='Columns']")
ASSISTANT_CLOSE = (By.CSS_SELECTOR, '[data-component-id="mlflow.assistant.chat_panel.close"]')


def runs_url(base_url: str, experiment_id: str) -> str:
    """The page of an experiment's run table."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """The page of one run: its metrics, parameters, tags and parent."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _row(run_id: str) -> str:
    return f"[role=row][row-id={json.dumps(run_id)}]"


def _has_rows(driver: WebDriver, run_ids: list[str]) -> bool:
    return all(driver.find_elements(By.CSS_SELECTOR, _row(r)) for r in run_ids)


def wait_for_runs(driver: WebDriver, run_ids: Iterable[str], *, timeout: float = 60.0) -> None:
    """Wait until the run table has a row for every run in ``run_ids``."""
    ids = list(run_ids)
    wait_until(
        driver, lambda d: _has_rows(d, ids), timeout=timeout, what=f"no table rows for {ids}"
    )


def close_assistant(driver: WebDriver) -> None:
    """Close the "MLflow Assistant" side panel if it is open (it hides half the table)."""
    for button in driver.find_elements(*ASSISTANT_CLOSE):
        if button.is_displayed():
            button.click()


def expand(
    driver: WebDriver, parent_run_id: str, child_run_ids: Iterable[str], *, timeout: float = 30.0
) -> None:
    """Click the expander of a parent run's row and wait for its children's rows."""
    children = list(child_run_ids)
    if children and _has_rows(driver, children):
        return  # already expanded
    driver.find_element(By.CSS_SELECTOR, f"{_row(parent_run_id)} button").click()
    wait_for_runs(driver, children, timeout=timeout)


def _shown(driver: WebDriver, name: str) -> bool:
    """Whether the table has a column headed ``name`` (innerText: a header scrolled out of
    view counts too)."""
    return any(
        (h.get_property("innerText") or "").strip() == name
        for h in driver.find_elements(By.CSS_SELECTOR, "[role=columnheader]")
    )


def _toggle_column(driver: WebDriver, name: str, timeout: float) -> None:
    item = (By.CSS_SELECTOR, f"[class*=tree-node-content-wrapper][title={json.dumps(name)}]")
    menu = f"the Columns menu's {name!r}"
    wait_until(driver, EC.element_to_be_clickable(COLUMNS_BUTTON), timeout=timeout, what=menu)
    driver.find_element(*COLUMNS_BUTTON).click()
    wait_until(driver, EC.element_to_be_clickable(item), timeout=timeout, what=menu).click()
    driver.find_element(*COLUMNS_BUTTON).click()  # closes the menu


def show_columns(driver: WebDriver, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Tick ``names`` (metrics first, where a parameter has the same name) in the
    "Columns" menu, and wait until the table shows them."""
    for name in names:
        if not _shown(driver, name):
            _toggle_column(driver, name, timeout)
        wait_until(
            driver, lambda d, n=name: _shown(d, n), timeout=timeout, what=f"no column {name!r}"
        )


def hide_columns(driver: WebDriver, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Untick ``names`` (such as ``"Dataset"``, ``"Source"``) in the "Columns" menu, and
    wait until the table no longer shows them."""
    for name in names:
        if _shown(driver, name):
            _toggle_column(driver, name, timeout)
        wait_until(
            driver, lambda d, n=name: not _shown(d, n), timeout=timeout, what=f"column {name!r}"
        )


def fit_column(driver: WebDriver, column: str) -> None:
    """Widen ``column`` (an ag-grid col-id) to its content: a double click on the edge of
    its header, as a user would."""
    css = f".ag-header-cell[col-id={json.dumps(column)}] .ag-header-cell-resize"
    handle = driver.find_element(By.CSS_SELECTOR, css)
    ActionChains(driver).scroll_to_element(handle).double_click(handle).perform()


def cells(driver: WebDriver, column: str) -> dict[str, str]:
    """Run id → the text of its cell in ``column`` (an ag-grid col-id such as
    ``"metrics.`val_accuracy`"`` or ``"attributes.`Run Name`"``), for every shown row;
    the link's text where the cell has one (a run name, not its colour swatch's label)."""
    css = f"[role=gridcell][col-id={json.dumps(column)}]"
    out = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, css):
        row = cell.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
        link = cell.find_elements(By.TAG_NAME, "a")
        out[row.get_attribute("row-id")] = (link[0] if link else cell).get_property("innerText")
    return {run_id: cell_text.strip() for run_id, cell_text in out.items()}
