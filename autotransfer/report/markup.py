"""The pieces of the report's HTML: escaping and number formats, sections, tables and
inline SVG figures. Every string from the data or the run goes through :func:`e`."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape
from typing import Any


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def num(x: Any, digits: int = 4) -> str:
    if x is None or isinstance(x, bool):
        return "–"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return e(x)
    if math.isnan(f):
        return "–"
    return f"{f:.{digits}f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s" if s < 3600 else f"{s / 3600:.1f} h"


def section(key: str, title: str, lead: str, content: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{key}"><h2>{e(title)}</h2>{lead_html}{content}</section>'


def table(
    head: Sequence[str], rows: Sequence[str], numeric: Sequence[bool] = (), cls: str = ""
) -> str:
    ths = "".join(
        f'<th class="num">{h}</th>' if i < len(numeric) and numeric[i] else f"<th>{h}</th>"
        for i, h in enumerate(head)
    )
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def kv(title: str, pairs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in pairs)
    return f"<div><h3>{e(title)}</h3><table><tbody>{rows}</tbody></table></div>"


def img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="{e(alt)}">'


def figure_section(key: str, title: str, svg: str | None, lead: str, caption: str) -> str:
    if not svg:
        return section(key, title, e(lead), '<div class="note">Nothing to plot.</div>')
    body = f"<figure>{img(svg, title)}<figcaption>{e(caption)}</figcaption></figure>"
    return section(key, title, e(lead), body)
