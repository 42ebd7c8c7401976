"""Tests of the built-in synthetic data set (ensemble.demo_data)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemble import demo_data
from ensemble.demo_data import MAX_CLASSES, class_names, make_demo

SMALL = {"n_classes": 4, "n_train": 22, "n_test": 9, "size": 32, "seed": 3}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory) -> Path:
    """The demo at its default size (1000 train, 300 test, 64 px, 10 classes), generated once."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    make_demo(out)
    return out


def test_same_arguments_give_identical_bytes(tmp_path):
    make_demo(tmp_path / "a", **SMALL)
    make_demo(tmp_path / "b", **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(a) == list(b) and len(a) == 3 + SMALL["n_train"] + SMALL["n_test"]
    assert a == b
    make_demo(tmp_path / "c", **{**SMALL, "seed": 4})
    c = _files(tmp_path / "c")
    assert a["labels.csv"] != c["labels.csv"]
    assert not {n for n in a if n.endswith(".jpg")} & set(c)  # different ids, so different image names


def test_layout_and_balance(default_demo):
    labels, answers = _read(default_demo / "labels.csv"), _read(default_demo / "test_labels.csv")
    sample = _read(default_demo / "sample_submission.csv")
    classes = sorted(class_names(10))
    assert list(labels.columns) == ["id", "breed"] and list(answers.columns) == ["id", "breed"]
    assert len(labels) == 1000 and len(answers) == 300
    assert list(sample.columns) == ["id", *classes]
    assert list(sample["id"]) == list(answers["id"])
    assert (sample[classes] == "0.100000").all().all()
    assert labels["breed"].value_counts().to_dict() == dict.fromkeys(classes, 100)
    assert answers["breed"].value_counts().to_dict() == dict.fromkeys(classes, 30)
    assert labels["breed"].iloc[:10].nunique() > 1  # rows are shuffled, not grouped by class
    ids = list(labels["id"]) + list(answers["id"])
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    for split, table in (("train", labels), ("test", answers)):
        assert sorted(p.stem for p in (default_demo / split).iterdir()) == sorted(table["id"])
    for image_id in list(labels["id"][:20]) + list(answers["id"][:20]):
        split = "train" if image_id in set(labels["id"]) else "test"
        with Image.open(default_demo / split / f"{image_id}.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))
    assert sorted(p.name for p in default_demo.iterdir()) == [
        "labels.csv", "sample_submission.csv", "test", "test_labels.csv", "train"]


def test_remainder_is_spread_and_other_sizes_work(tmp_path):
    make_demo(tmp_path / "d", **SMALL)
    counts = _read(tmp_path / "d" / "labels.csv")["breed"].value_counts()
    assert sorted(counts) == [5, 5, 6, 6]
    assert sorted(_read(tmp_path / "d" / "test_labels.csv")["breed"].value_counts()) == [2, 2, 2, 3]
    with Image.open(next((tmp_path / "d" / "test").iterdir())) as im:
        assert im.size == (32, 32)
    make_demo(tmp_path / "all", n_classes=MAX_CLASSES, n_train=MAX_CLASSES, n_test=MAX_CLASSES, size=48)
    sample = _read(tmp_path / "all" / "sample_submission.csv")
    assert list(sample.columns[1:]) == sorted(class_names(MAX_CLASSES))


def test_class_names_are_unique_readable_and_nested():
    for k in range(2, MAX_CLASSES + 1):
        names = class_names(k)
        assert len(set(names)) == k == len(names)
        assert all(re.fullmatch(r"[a-z]+(_[a-z]+)+", n) for n in names)
        assert names == class_names(MAX_CLASSES)[:k]
    assert set(class_names(10)) == {f"{t}_{s}" for t in demo_data.TEXTURES[:2] for s in demo_data.SHAPES[:5]}


def _colour_histograms(root: Path, split: str, ids) -> np.ndarray:
    rows = []
    for image_id in ids:
        with Image.open(root / split / f"{image_id}.jpg") as im:
            a = np.asarray(im.convert("RGB"))
        hist = [np.histogram(a[..., c], bins=16, range=(0, 256))[0] for c in range(3)]
        rows.append(np.concatenate(hist) / a[..., 0].size)
    return np.array(rows)


def test_colour_histograms_are_not_enough(default_demo):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    labels, answers = _read(default_demo / "labels.csv"), _read(default_demo / "test_labels.csv")
    x_train = _colour_histograms(default_demo, "train", labels["id"])
    x_test = _colour_histograms(default_demo, "test", answers["id"])
    model = LogisticRegression(max_iter=2000).fit(x_train, labels["breed"])
    loss = log_loss(answers["breed"], model.predict_proba(x_test), labels=model.classes_)
    assert loss >= 0.5 * math.log(10) + 0.3, f"colour histograms alone reach a test log loss of {loss:.3f}"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_classes": MAX_CLASSES + 1}, f"n_classes must be an int between 2 and {MAX_CLASSES} (MAX_CLASSES)"),
    ({"n_classes": 1}, "n_classes must be an int between 2 and"),
    ({"n_classes": 2.5}, "n_classes must be an int"),
    ({"n_classes": 5, "n_train": 4}, "n_train must be an int >= 5 (n_classes), got 4"),
    ({"n_classes": 5, "n_test": 3}, "n_test must be an int >= 5 (n_classes), got 3"),
    ({"size": 8}, "size must be an int between 16 and 1024, got 8"),
    ({"size": 4096}, "size must be an int between 16 and 1024"),
    ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ({"n_train": True}, "n_train must be an int"),
])
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_demo(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_replaces_existing_folder_atomically(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    out.mkdir()  # pre-created and empty, as Snakemake leaves it
    make_demo(out, **SMALL)
    good = _files(out)
    (out / "stale.txt").write_text("left over")
    (out / "train" / "0123.jpg").write_bytes(b"partial")
    make_demo(out, **SMALL)
    assert _files(out) == good
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folders left

    def broken(*args, **kwargs):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(demo_data, "_render", broken)
    with pytest.raises(RuntimeError):
        make_demo(out, **{**SMALL, "seed": 9})
    assert _files(out) == good  # the old set is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
