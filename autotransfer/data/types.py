"""What ingestion produces: records, the validation report and the dataset."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from autotransfer.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One readable image: where it is, its label index and what the scan learned."""

    path: str
    label: int
    sha256: str
    width: int
    height: int
    mode: str  # PIL mode as stored on disk ("RGB", "L", "P", "RGBA", "CMYK", "I;16", ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageRecord:
        return cls(**d)


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the dataset and why (corrupt, truncated, empty, not an image...)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicatePair:
    """An evaluation image whose bytes equal a training image (dropped from evaluation)."""

    split: str
    path: str
    train_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidationReport:
    """Everything the validation pass noticed, for the user to see."""

    scanned: int = 0
    skipped: tuple[SkippedFile, ...] = ()
    singleton_classes: tuple[str, ...] = ()
    duplicates_dropped: tuple[DuplicatePair, ...] = ()
    converted_modes: dict[str, int] = field(default_factory=dict)  # mode -> count made RGB

    def summary(self) -> str:
        """A few human-readable lines: counts first, then the files concerned."""
        lines = [f"scanned {self.scanned} files, skipped {len(self.skipped)}"]
        for s in self.skipped[:20]:
            lines.append(f"  skipped {s.path}: {s.reason}")
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more skipped")
        if self.singleton_classes:
            lines.append(
                "classes with a single image (hard to learn, cannot be split): "
                + ", ".join(self.singleton_classes)
            )
        if self.duplicates_dropped:
            lines.append(
                f"dropped {len(self.duplicates_dropped)} evaluation images identical to "
                "training images"
            )
            for d in self.duplicates_dropped[:20]:
                lines.append(f"  dropped {d.split} {d.path}: same bytes as {d.train_path}")
            if len(self.duplicates_dropped) > 20:
                lines.append(f"  ... and {len(self.duplicates_dropped) - 20} more dropped")
        if self.converted_modes:
            modes = ", ".join(f"{m}: {n}" for m, n in sorted(self.converted_modes.items()))
            lines.append(f"converted to RGB on load: {modes}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "skipped": [s.to_dict() for s in self.skipped],
            "singleton_classes": list(self.singleton_classes),
            "duplicates_dropped": [d.to_dict() for d in self.duplicates_dropped],
            "converted_modes": dict(self.converted_modes),
        }


@dataclass(frozen=True)
class ImageDataset:
    """A checked, split image-classification dataset.

    ``train`` and ``val`` are always non-empty; ``test`` is empty unless the folder or
    manifest provides one. Labels index into ``classes`` (sorted class names).
    """

    root: str
    layout: str  # "class_folders", "split_folders" or "manifest"
    classes: tuple[str, ...]
    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]
    test: tuple[ImageRecord, ...] = ()
    report: ValidationReport = field(default_factory=ValidationReport)
    seed: int = 0

    def split(self, name: str) -> tuple[ImageRecord, ...]:
        if name not in SPLITS:
            raise ConfigError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        return getattr(self, name)

    @property
    def records(self) -> tuple[ImageRecord, ...]:
        return self.train + self.val + self.test

    def fingerprint(self, split: str | None = None) -> str:
        """A content hash of the images (bytes and labels) of one split or of all."""
        recs = self.split(split) if split else self.records
        h = hashlib.sha256()
        h.update("\x1f".join(self.classes).encode())
        for r in recs:
            h.update(f"{r.sha256}:{r.label};".encode())
        return h.hexdigest()[:20]
