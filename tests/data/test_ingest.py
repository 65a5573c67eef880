"""open_dataset: layouts, manifests and the seeded, stratified split."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from autotransfer.data.ingest import open_dataset
from autotransfer.errors import ConfigError, DataError, DataWarning
from autotransfer.testing.images import make_image_folder


def rel(records, root) -> list[str]:
    return sorted(os.path.relpath(r.path, root) for r in records)


def label_names(ds, records) -> set[str]:
    return {ds.classes[r.label] for r in records}


def test_class_folders_are_split_stratified(folder):
    ds = open_dataset(folder)
    assert ds.layout == "class_folders" and ds.root == str(folder)
    assert ds.classes == ("a", "b", "c")
    assert len(ds.train) + len(ds.val) == 18 and len(ds.val) == 4 and ds.test == ()
    assert label_names(ds, ds.val) == {"a", "b", "c"}
    assert not {r.path for r in ds.train} & {r.path for r in ds.val}
    for r in ds.records:  # labels follow the folder names
        assert ds.classes[r.label] == Path(r.path).parent.name
    assert [r.path for r in ds.train] == sorted(r.path for r in ds.train)


def test_split_is_deterministic_and_independent_of_listing_order(tmp_path, folder):
    first = open_dataset(folder, seed=3)
    assert open_dataset(folder, seed=3) == first
    assert rel(open_dataset(folder, seed=4).val, folder) != rel(first.val, folder)
    # the same files written in the opposite order give the same split
    other = tmp_path / "other"
    for src in sorted(folder.rglob("*.*"), reverse=True):
        dest = other / src.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    assert rel(open_dataset(other, seed=3).val, other) == rel(first.val, folder)


def test_val_fraction_is_validated(folder):
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ConfigError, match="val_fraction"):
            open_dataset(folder, val_fraction=bad)


def test_tiny_classes_still_get_a_validation_image_each(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=tuple("abcde"), per_class=2)
    ds = open_dataset(root, val_fraction=0.1)
    assert len(ds.val) == 5 and label_names(ds, ds.val) == set("abcde")
    assert label_names(ds, ds.train) == set("abcde")


def test_single_image_class_is_flagged_and_kept_in_train(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=5)
    make_image_folder(root, classes=("solo",), per_class=1, seed=9)
    with pytest.warns(DataWarning, match="single image.*solo"):
        ds = open_dataset(root)
    assert ds.report.singleton_classes == ("solo",)
    assert "solo" in label_names(ds, ds.train) and "solo" not in label_names(ds, ds.val)
    assert "single image" in ds.report.summary()


def test_only_singletons_cannot_be_validated(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=1)
    with pytest.raises(DataError, match="single image.*val/"):
        open_dataset(root)


def test_fewer_than_two_classes_says_what_is_expected(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("only",), per_class=4)
    with pytest.raises(DataError) as err:
        open_dataset(root)
    msg = str(err.value)
    assert "1 class(es)" in msg and "at least two" in msg and "root/<class>/<image>" in msg
    with pytest.raises(DataError, match="0 class"):
        open_dataset(make_image_folder(tmp_path / "flat", classes=()))


def test_missing_source_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="No such folder"):
        open_dataset(tmp_path / "nope")


def test_nested_folders_belong_to_their_top_class(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=3)
    make_image_folder(root / "a" / "indoor" / "deeper", classes=("x",), per_class=2, seed=5)
    ds = open_dataset(root)
    nested = [r for r in ds.records if "indoor" in r.path]
    assert len(nested) == 2 and {ds.classes[r.label] for r in nested} == {"a"}
    assert ds.classes == ("a", "b")


def test_symlink_loops_and_links_to_other_classes_are_not_followed(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=3)
    os.symlink("..", root / "a" / "up")  # back to the root
    os.symlink(".", root / "a" / "self")
    os.symlink("../b", root / "a" / "to_b")
    outside = make_image_folder(tmp_path / "outside", classes=("more",), per_class=2, seed=4)
    os.symlink(outside / "more", root / "b" / "linked")  # a plain linked folder is read
    ds = open_dataset(root)
    assert len(ds.records) == 8
    assert sum("linked" in r.path for r in ds.records) == 2


def test_split_folders_keep_given_splits(tmp_path):
    root = make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=6, layout="split_folders",
        splits=("train", "valid", "test"),
    )  # fmt: skip
    ds = open_dataset(root)
    assert ds.layout == "split_folders" and ds.classes == ("a", "b")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 6, 6)
    assert all("/valid/" in r.path for r in ds.val) and all("/test/" in r.path for r in ds.test)


def test_split_folders_without_val_carve_it_from_train(tmp_path):
    root = make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=10, layout="split_folders",
        splits=("train", "test"),
    )  # fmt: skip
    ds = open_dataset(root, val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (16, 4, 10)
    assert all("/train/" in r.path for r in ds.train + ds.val)


def test_split_folders_class_list_is_the_union(tmp_path):
    root = make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=4, layout="split_folders"
    )
    make_image_folder(root / "val", classes=("c",), per_class=2, seed=7)
    with pytest.warns(DataWarning, match="no training images: c"):
        ds = open_dataset(root)
    assert ds.classes == ("a", "b", "c") and "c" in label_names(ds, ds.val)


def test_split_folder_mistakes_are_explained(tmp_path):
    root = make_image_folder(
        tmp_path / "d", classes=("a", "b"), per_class=2, layout="split_folders"
    )
    make_image_folder(root / "valid", classes=("a", "b"), per_class=2, seed=3)
    with pytest.raises(DataError, match="both val/ and valid/"):
        open_dataset(root)
    no_train = make_image_folder(
        tmp_path / "e", classes=("a", "b"), layout="split_folders", splits=("val",)
    )
    with pytest.raises(DataError, match="no train/ folder"):
        open_dataset(no_train)


def test_mixing_split_and_class_folders_warns(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("train", "cat"), per_class=3)
    with pytest.warns(DataWarning, match="mixes split folders"):
        ds = open_dataset(root)
    assert ds.classes == ("cat", "train")


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_with_relative_absolute_and_missing_paths(tmp_path, folder):
    files = sorted(folder.rglob("*.*"))
    lines = ["path,label"]
    lines += [f"{f.relative_to(tmp_path)},{f.parent.name}" for f in files[:9]]
    lines += [f"{f},{f.parent.name}" for f in files[9:]]  # absolute
    lines += ["data/a/gone.png,a", ""]
    with pytest.warns(DataWarning, match=r"Skipped 1 file .*data/a/gone.png \(listed on"):
        ds = open_dataset(write_manifest(tmp_path / "labels.csv", lines))
    assert ds.layout == "manifest" and ds.classes == ("a", "b", "c")
    assert len(ds.records) == 18
    (missing,) = ds.report.skipped
    assert missing.path.endswith("gone.png") and "line 20 but does not exist" in missing.reason


def test_manifest_split_column(tmp_path, folder):
    files = sorted(folder.rglob("*.*"))
    lines = ["path,label,split"]
    for i, f in enumerate(files):
        split = ["train", "train", "valid", "test", "", "train"][i % 6]
        lines.append(f"{f},{f.parent.name},{split}")
    ds = open_dataset(write_manifest(tmp_path / "m.csv", lines))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 3, 3)


@pytest.mark.parametrize(
    "lines, match",
    [
        (["file,class", "a.png,a"], "line 1: the header must name the columns 'path,label'"),
        ([], "line 1"),
        (["path,label", "data/a/a_000.png,a", "data/a/a_001.png"], "line 3: expected 2 fields"),
        (["path,label,split", "data/a/a_000.png,a,holdout"], "line 2: unknown split 'holdout'"),
        (["path,label", "data/a/a_000.png,"], "line 2: empty path or label"),
    ],
)
def test_malformed_manifest_names_file_and_line(tmp_path, folder, lines, match):
    manifest = write_manifest(tmp_path / "bad.csv", lines)
    with pytest.raises(DataError, match=match) as err:
        open_dataset(manifest)
    assert str(manifest) in str(err.value)
