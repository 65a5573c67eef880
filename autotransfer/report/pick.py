"""The pick scored again for the report: its confusion matrix, per-class accuracy and the
images it gets wrong, on the test split when the data has one, else on validation.

The data is reopened as the fit read it (``plan.json`` records the folder and the split
settings) and must still be the same images: a split whose content hash differs from the
one the fit recorded is refused, since its scores would describe other data.

>>> ev = evaluate_pick(collect_run("autotransfer-runs/flowers"))   # doctest: +SKIP
>>> ev.split, ev.metrics["accuracy"], len(ev.examples)            # doctest: +SKIP
('test', 0.881, 48)
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autotransfer.config import DataSettings
from autotransfer.data.images import load_image
from autotransfer.data.ingest import open_folder
from autotransfer.errors import DataError
from autotransfer.metrics import classification_metrics, confusion
from autotransfer.model import Classifier
from autotransfer.model_files import model_folder

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.report.collect import RunFacts

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 112


@dataclass(frozen=True)
class Example:
    """One misclassified image: its file, true and predicted class, the predicted class's
    probability, and a JPEG thumbnail as a ``data:`` URI."""

    path: str
    true: str
    predicted: str
    confidence: float
    thumbnail: str


@dataclass(frozen=True)
class PickEvaluation:
    """The pick on one split: ``confusion[i][j]`` counts images of class ``i`` predicted
    as ``j``; ``examples`` are the misclassified images, most confident first, at most the
    number asked for; ``num_wrong`` counts them all."""

    split: str
    classes: tuple[str, ...]
    confusion: list[list[int]]
    metrics: dict[str, float]
    examples: tuple[Example, ...]
    num_wrong: int

    def per_class(self) -> list[tuple[str, int, int, float | None]]:
        """``(class, images, correct, accuracy)`` per class; accuracy None without images."""
        out = []
        for i, name in enumerate(self.classes):
            n, ok = sum(self.confusion[i]), self.confusion[i][i]
            out.append((name, n, ok, ok / n if n else None))
        return out


def evaluate_pick(
    facts: RunFacts, *, device: str | None = None, max_examples: int = 48
) -> PickEvaluation:
    """Score the saved model of ``facts.run_dir`` on the data the fit used."""
    import numpy as np

    if not facts.dataset_root:
        raise DataError(f"plan.json in {facts.run_dir} does not say where the data is.")
    result = Classifier.load(model_folder(facts.run_dir))
    data_settings = facts.plan.get("data_settings") or {"seed": facts.settings.get("seed", 0)}
    ds = open_folder(facts.dataset_root, DataSettings(**data_settings), progress=False)
    split = "test" if ds.test else "val"
    recorded = facts.plan.get("data")
    if isinstance(recorded, dict) and recorded.get(split) not in (None, ds.fingerprint(split)):
        raise DataError(
            f"The {split} images in {ds.root} changed since the fit, so scoring the pick on "
            "them would describe other data. Restore the folder, or fit again."
        )
    index = {name: i for i, name in enumerate(result.classes)}
    records = ds.split(split)
    unknown = sorted({ds.classes[r.label] for r in records} - set(index))
    if unknown:
        raise DataError(f"{ds.root} has classes the model does not know: {', '.join(unknown)}.")
    log.info("Scoring the pick on %d %s images.", len(records), split)
    y = np.array([index[ds.classes[r.label]] for r in records], dtype=np.int64)
    proba = result.predict_proba([r.path for r in records], device=device)
    pred = proba.argmax(axis=1)
    k = len(result.classes)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")]
    examples = tuple(
        Example(
            path=records[i].path,
            true=result.classes[y[i]],
            predicted=result.classes[pred[i]],
            confidence=float(proba[i, pred[i]]),
            thumbnail=thumbnail(records[i].path),
        )
        for i in wrong[: max(0, int(max_examples))]
    )
    metrics: dict[str, Any] = classification_metrics(y, proba, k)
    metrics["num_images"] = len(records)
    return PickEvaluation(
        split=split,
        classes=tuple(result.classes),
        confusion=confusion(y, pred, k),
        metrics=metrics,
        examples=examples,
        num_wrong=int(wrong.size),
    )


def thumbnail(path: str, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG thumbnail of the image at ``path`` (upright RGB, longest side ``side``) as a
    ``data:`` URI; an empty string when the file cannot be read any more."""
    try:
        img = load_image(path, draft=side)
    except (OSError, DataError) as exc:
        log.warning("No thumbnail of %s: %s", path, exc)
        return ""
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
