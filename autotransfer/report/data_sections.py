"""The report's sections on what the search started from: the data and the ranking."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING

from autotransfer.report.markup import e, kv, num, section, table

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.report.collect import RunFacts


def data_section(facts: RunFacts) -> str:
    d = facts.descriptor
    if d is None:
        return section("data", "Data", "", '<div class="note">No descriptor.json.</div>')
    pc, s, r = d.train_per_class, d.image_size, d.regime
    overview = [
        ("folder", f"<code>{e(d.root)}</code>"),
        ("layout", e(d.layout)),
        (
            "images",
            f"{d.num_images} (" + ", ".join(f"{e(k)} {v}" for k, v in d.split_sizes.items()) + ")",
        ),
        ("classes", str(d.num_classes)),
        (
            "train images per class",
            " / ".join(num(pc.get(k), 0) for k in ("min", "median", "max"))
            + " (min / median / max)",
        ),
        ("imbalance (largest / smallest)", num(d.imbalance_ratio, 2) + "×"),
        ("skipped files", str(d.skipped_files)),
        ("eval duplicates of train dropped", str(d.duplicates_dropped)),
    ]
    images = [
        ("median size", f"{num(s.get('width_median'), 0)} × {num(s.get('height_median'), 0)} px"),
        ("smallest", f"{num(s.get('width_min'), 0)} × {num(s.get('height_min'), 0)} px"),
        ("largest", f"{num(s.get('width_max'), 0)} × {num(s.get('height_max'), 0)} px"),
        ("aspect ratio", f"{num(s.get('aspect_min'), 2)} – {num(s.get('aspect_max'), 2)}"),
        ("colour modes", ", ".join(f"{e(m)} {n}" for m, n in d.color_modes.items())),
        (
            "BiT regime",
            f"{e(r.get('regime', '–'))}: {e(r.get('schedule_steps', '–'))} steps, "
            f"resize {e(r.get('resize', '–'))}, crop {e(r.get('crop', '–'))}, "
            f"MixUp {e(r.get('mixup_alpha', '–'))}",
        ),
    ]
    plan = facts.plan
    if plan:
        images.append(("fit resolution", f"{e(plan.get('resolution', '–'))} px"))
        images.append(("similarity to the source", num(plan.get("similarity"), 3)))
    total = max(1, sum(d.class_counts.values()))
    class_rows = [
        f'<tr><td>{e(c)}</td><td class="num">{n}</td><td class="num">{100 * n / total:.1f} %'
        "</td></tr>"
        for c, n in d.class_counts.items()
    ]
    out = [f'<div class="kv">{kv("Overview", overview)}{kv("Images", images)}</div>']
    out.append(
        "<h3>Classes</h3>" + table(("class", "images", "share"), class_rows, (False, True, True))
    )
    if d.source_similarity:
        rows = [
            f"<tr><td>{e(k)}</td>"
            + "".join(
                f'<td class="num">{num(x, 3)}</td>'
                for x in (v.head_entropy, v.head_confidence, v.head_mutual_info, v.bn_kl)
            )
            + "</tr>"
            for k, v in d.source_similarity.items()
        ]
        out.append(
            "<h3>Similarity to each backbone's pretraining source</h3>"
            '<p class="lead">The source head on these images: entropy (0 certain … 1 uniform), '
            "confidence and mutual information (how much it tells the images apart); BN KL: "
            "last-BatchNorm statistics against the source's (0 = the same).</p>"
            + table(
                ("backbone", "entropy", "confidence", "mutual info", "BN KL"),
                rows,
                (False, True, True, True, True),
            )
        )
    for name, extra in d.extra.items():
        out.append(
            f'<h3>{e(name)}</h3><pre class="mono">'
            f"{e(json.dumps(extra, indent=2, default=str))}</pre>"
        )
    return section("data", "Data", "What <code>describe</code> found in the folder.", "".join(out))


def ranking_section(facts: RunFacts) -> str:
    rk = facts.ranking
    if rk is None:
        return section("ranking", "Ranking", "", '<div class="note">No ranking.json.</div>')
    acc = facts.best_accuracy_by_backbone()
    trials = Counter(t.backbone for t in facts.trials)
    best_of = {}
    for est in rk.estimators:
        vals = [r.scores.get(est) for r in rk.rows]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        best_of[est] = max(vals) if vals else None
    pick = facts.best.backbone if facts.best else None
    rows = []
    shortlist = set(rk.shortlist)
    for r in rk.rows:
        short = ' <span class="badge short">shortlist</span>' if r.backbone in shortlist else ""
        cells = [
            f'<td class="num">{r.rank}</td><td class="nowrap">{e(r.backbone)}{short}</td>',
            f'<td class="num"><b>{num(r.aggregate, 3)}</b></td>',
        ]
        for est in rk.estimators:
            v = r.scores.get(est)
            cls = "num best" if v is not None and v == best_of[est] else "num"
            cells.append(f'<td class="{cls}">{num(v, 3)}</td>')
        cells.append(f'<td class="num">{num(acc.get(r.backbone))}</td>')
        cells.append(f'<td class="num">{trials.get(r.backbone, 0)}</td>')
        cells.append(f'<td class="num">{num(r.params_m, 1)}</td>')
        tr = '<tr class="pick">' if r.backbone == pick else "<tr>"
        rows.append(tr + "".join(cells) + "</tr>")
    head = [
        "#",
        "backbone",
        "aggregate",
        *(e(x).replace("_", "_<wbr>") for x in rk.estimators),
        "best val acc",
        "trials",
        "params (M)",
    ]
    numeric = [True, False, True, *([True] * len(rk.estimators)), True, True, True]
    lead = (
        "Every estimator's score per backbone (higher is better; the best in each column in "
        "blue), from one forward pass of frozen features, before any training. The "
        "aggregate is the mean normalised rank over "
        + e(", ".join(rk.aggregate_estimators))
        + f"; the top {rk.top_k} went into the search"
        + (f", and {e(rk.hedged)}, the best of another architecture family" if rk.hedged else "")
        + ". The last columns are what the search then measured."
        + (f" The estimators' {e(rk.sample_note())}." if rk.images else "")
    )
    skipped = "".join(
        f'<div class="note">Not ranked: {e(b)}: {e(why)}</div>' for b, why in rk.skipped.items()
    )
    body = table(head, rows, numeric, cls="dense")
    return section("ranking", "Ranking", lead, body + skipped)
