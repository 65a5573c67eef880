"""The report's plots, drawn with matplotlib and returned as SVG text.

Figures are built as :class:`matplotlib.figure.Figure` objects, never through pyplot, so
no global figure state is touched and no display is needed. Text is drawn as paths (no
font files are needed to view the SVG) and never parsed as mathtext, so a class called
``$x$`` is drawn as it is written. Each function returns None when there is nothing to
draw.

>>> svg = learning_curves({0: [(0, 0.5), (1, 0.75)]}, {0: ("full_finetune", "complete")}, 0)
>>> svg.lstrip().startswith("<svg")
True
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from autotransfer.transferability.ranking import Ranking

# A colour-blind-safe palette (Okabe-Ito), then matplotlib's tab10 for more series.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
PICK_COLOUR = "#D62728"
_STYLE = {
    "svg.fonttype": "path",
    "svg.hashsalt": "autotransfer-report",  # the same run gives the same SVG
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}


def colour(i: int) -> str:
    if i < len(PALETTE):
        return PALETTE[i]
    from matplotlib import colormaps

    r, g, b, _ = colormaps["tab10"](i % 10)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def short_name(backbone: str) -> str:
    """``package:efficientnet_lite0`` -> ``efficientnet_lite0`` (labels stay short)."""
    return backbone.split(":", 1)[-1]


@contextmanager
def _style():
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        yield


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def estimator_scatter(
    ranking: Ranking, accuracy: Mapping[str, float], pick: str | None = None
) -> str | None:
    """One panel per estimator (and the aggregate): each trained backbone's score against
    the best validation accuracy of its trials, with Spearman's rho over three or more."""
    from matplotlib.figure import Figure
    from scipy.stats import spearmanr

    rows = [r for r in ranking.rows if r.backbone in accuracy]
    names = [
        *(e for e in ranking.estimators if any(_finite(r.scores.get(e)) for r in rows)),
        "aggregate",
    ]
    if not rows:
        return None
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    colours = {r.backbone: colour(i) for i, r in enumerate(rows)}
    with _style():
        fig = Figure(figsize=(2.7 * ncols, 2.35 * nrows + 0.5), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, name in zip(axes, names):
            pts = []
            for r in rows:
                x = r.aggregate if name == "aggregate" else r.scores.get(name)
                if _finite(x):
                    pts.append((x, accuracy[r.backbone], r.backbone))
            for x, y, b in pts:
                ax.scatter(
                    x,
                    y,
                    s=70 if b == pick else 42,
                    color=colours[b],
                    zorder=3,
                    edgecolors=PICK_COLOUR if b == pick else "white",
                    linewidths=1.6,
                )
            title = name
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if len(pts) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
                rho = spearmanr(xs, ys).statistic
                title += f"   ρ = {rho:+.2f}"
            ax.set_title(title, loc="left")
            ax.margins(0.15)
            ax.tick_params(labelsize=8)
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        for ax in axes[::ncols]:
            ax.set_ylabel("best val accuracy")
        handles = [_dot(colours[r.backbone], r.backbone == pick) for r in rows]
        labels = [short_name(r.backbone) + ("  (pick)" if r.backbone == pick else "") for r in rows]
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(rows)))
        return _svg(fig)


def _finite(x: Any) -> bool:
    return x is not None and not math.isnan(x)


def _dot(c: str, pick: bool) -> Any:
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        marker="o",
        linestyle="",
        markersize=8,
        markerfacecolor=c,
        markeredgecolor=PICK_COLOUR if pick else "white",
        markeredgewidth=1.6,
    )


def learning_curves(
    curves: Mapping[int, Sequence[tuple[int, float]]],
    trials: Mapping[int, tuple[str, str]],
    pick: int | None = None,
) -> str | None:
    """Validation accuracy per epoch of every trial (``trials``: number -> (strategy,
    state)), coloured by strategy, pruned trials dashed, the pick drawn over the rest."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    drawn = {n: pts for n, pts in curves.items() if pts and n in trials}
    if not drawn:
        return None
    strategies = sorted({trials[n][0] for n in drawn})
    colours = {s: colour(i) for i, s in enumerate(strategies)}
    with _style():
        fig = Figure(figsize=(9.5, 3.8), layout="constrained")
        ax = fig.subplots()
        for n in sorted(drawn, key=lambda n: n == pick):  # the pick last, on top
            strategy, state = trials[n]
            xs = [e + 1 for e, _ in drawn[n]]
            ys = [v for _, v in drawn[n]]
            is_pick = n == pick
            ax.plot(
                xs,
                ys,
                color=PICK_COLOUR if is_pick else colours[strategy],
                linestyle="--" if state == "pruned" else "-",
                linewidth=2.6 if is_pick else 1.3,
                alpha=1.0 if is_pick else 0.7,
                marker="o",
                markersize=4.5 if is_pick or len(xs) == 1 else 2.5,
                zorder=4 if is_pick else 2,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("val accuracy")
        last = max(pts[-1][0] for pts in drawn.values()) + 1
        ax.set_xlim(0.5, max(last, 2) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles = [Line2D([], [], color=colours[s], linewidth=2) for s in strategies]
        labels = list(strategies)
        if any(trials[n][1] == "pruned" for n in drawn):
            handles.append(Line2D([], [], color="#6b7280", linestyle="--"))
            labels.append("pruned")
        if pick in drawn:
            handles.append(Line2D([], [], color=PICK_COLOUR, linewidth=2.6, marker="o"))
            labels.append(f"pick (trial {pick})")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _svg(fig)


def confusion_matrix(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str | None:
    """Rows true, columns predicted; shaded by the share of each true class, counts written
    in the cells up to 25 classes, class names on the axes up to 60."""
    import numpy as np
    from matplotlib.figure import Figure

    m = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    if k == 0 or m.shape != (k, k):
        return None
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = min(11.0, max(3.2, 0.42 * k + 2.2))
    with _style(), _no_grid():
        fig = Figure(figsize=(side + 0.8, side), layout="constrained")
        ax = fig.subplots()
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        if k <= 25:
            for i in range(k):
                for j in range(k):
                    if m[i, j]:
                        ax.text(
                            j,
                            i,
                            str(m[i, j]),
                            ha="center",
                            va="center",
                            fontsize=8 if k > 12 else 9,
                            color="white" if share[i, j] > 0.55 else "#1f2937",
                        )
        if k <= 60:
            labels = [c if len(c) <= 20 else c[:19] + "…" for c in classes]
            ax.set_xticks(
                range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center"
            )
            ax.set_yticks(range(k), labels)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for s in ax.spines.values():
            s.set_visible(False)
        cbar = fig.colorbar(im, ax=ax, shrink=0.8)
        cbar.set_label("share of the true class")
        cbar.outline.set_visible(False)
        return _svg(fig)


@contextmanager
def _no_grid():
    import matplotlib

    with matplotlib.rc_context({"axes.grid": False}):
        yield
