"""Steps through MLflow's UI (the React app ``autotransfer ui`` serves) in a
:class:`~autotransfer.testing.browser.Page`: an experiment's run table, a parent run
expanded to show its trial runs, metric columns added, cells read.

The selectors are MLflow 3's, in one place: the run table is an ag-grid whose rows carry the
run id (``[role=row][row-id=<run id>]``) and whose cells carry the column
(``col-id="metrics.`val_accuracy`"``); a parent run's row has the expander as its first
button; the "Columns" button opens a tree of attributes, metrics, parameters and tags.
An experiment opens on the GenAI overview unless the URL names its run table
(:func:`runs_url`).

>>> page = browser.open(runs_url(ui, "1"))                         # doctest: +SKIP
>>> wait_for_runs(page, [parent_id])                               # doctest: +SKIP
>>> expand(page, parent_id, trial_ids)                             # doctest: +SKIP
>>> show_columns(page, ["val_accuracy"])                           # doctest: +SKIP
>>> cells(page, "metrics.`val_accuracy`")                           # doctest: +SKIP
{'d07375...': '-', '6396b5...': '1', ...}
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from autotransfer.testing.browser import BrowserError, Page

COLUMNS_BUTTON = (
    "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Columns')"
)


def runs_url(base_url: str, experiment_id: str) -> str:
    """The page of an experiment's run table."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """The page of one run: its metrics, parameters, tags and parent."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _query(css: str) -> str:
    return f"document.querySelector({json.dumps(css)})"


def _row(run_id: str) -> str:
    return _query(f"[role=row][row-id={json.dumps(run_id)}]")


def wait_for_runs(page: Page, run_ids: Iterable[str], *, timeout: float = 60.0) -> None:
    """Wait until the run table has a row for every run in ``run_ids``."""
    rows = " && ".join(f"!!{_row(r)}" for r in run_ids) or "true"
    page.wait_for(rows, timeout=timeout)


def close_assistant(page: Page) -> None:
    """Close the "MLflow Assistant" side panel if it is open (it hides half the table)."""
    page.evaluate(
        "document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
        "?.click()"
    )


def expand(
    page: Page, parent_run_id: str, child_run_ids: Iterable[str], *, timeout: float = 30.0
) -> None:
    """Click the expander of a parent run's row and wait for its children's rows."""
    children = list(child_run_ids)
    if children and page.evaluate(" && ".join(f"!!{_row(r)}" for r in children)):
        return  # already expanded
    clicked = page.evaluate(
        f"(() => {{ const b = {_row(parent_run_id)}?.querySelector('button');"
        " if (!b) return false; b.click(); return true; })()"
    )
    if not clicked:
        raise BrowserError(f"The row of run {parent_run_id} has no expander button.")
    wait_for_runs(page, children, timeout=timeout)


def _header(name: str) -> str:
    return (
        "[...document.querySelectorAll('[role=columnheader]')]"
        f".some(h => h.innerText.trim() === {json.dumps(name)})"
    )


def _toggle_column(page: Page, name: str, timeout: float) -> None:
    item = _query(f"[class*=tree-node-content-wrapper][title={json.dumps(name)}]")
    page.wait_for(f"!!{COLUMNS_BUTTON}", timeout=timeout)
    page.evaluate(f"{COLUMNS_BUTTON}.click()")
    page.wait_for(f"!!{item}", timeout=timeout)
    page.evaluate(f"{item}.click()")
    page.evaluate(f"{COLUMNS_BUTTON}.click()")  # closes the menu


def show_columns(page: Page, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Tick ``names`` (metrics first, where a parameter has the same name) in the
    "Columns" menu, and wait until the table shows them."""
    for name in names:
        if not page.evaluate(_header(name)):
            _toggle_column(page, name, timeout)
        page.wait_for(_header(name), timeout=timeout)


def hide_columns(page: Page, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Untick ``names`` (such as ``"Dataset"``, ``"Source"``) in the "Columns" menu, and
    wait until the table no longer shows them."""
    for name in names:
        if page.evaluate(_header(name)):
            _toggle_column(page, name, timeout)
        page.wait_for(f"!({_header(name)})", timeout=timeout)


def fit_column(page: Page, column: str) -> None:
    """Widen ``column`` (an ag-grid col-id) to its content: a double click on the edge of
    its header, as a user would."""
    page.click(f".ag-header-cell[col-id={json.dumps(column)}] .ag-header-cell-resize", count=2)


def cells(page: Page, column: str) -> dict[str, str]:
    """Run id → the text of its cell in ``column`` (an ag-grid col-id such as
    ``"metrics.`val_accuracy`"`` or ``"attributes.`Run Name`"``), for every shown row;
    the link's text where the cell has one (a run name, not its colour swatch's label)."""
    css = f"[role=gridcell][col-id={json.dumps(column)}]"
    script = (
        "JSON.stringify(Object.fromEntries("
        f"[...document.querySelectorAll({json.dumps(css)})]"
        ".map(c => [c.closest('[role=row]').getAttribute('row-id'),"
        " (c.querySelector('a') || c).innerText.trim()])))"
    )
    return json.loads(page.evaluate(script))
