"""The Kaggle Dog Breed Identification folder layout, and reading images from it as RGB.

    DATA/labels.csv              id,breed               one row per training image
    DATA/train/<id>.jpg          training images
    DATA/test/<id>.jpg           test images
    DATA/sample_submission.csv   id,<class 1>,...,<class K>   the column order of a valid submission

Any other data set laid out the same way works. Images are decoded by content, not by extension, so
grayscale (8- or 16-bit), CMYK, palette and PNG-in-.jpg files all load as 3-channel RGB, turned upright by
their EXIF orientation as a photo viewer shows them. Ids and class names are strings everywhere: ``NA``,
``None``, ``007`` stay what they are. The OS's bookkeeping files (``.DS_Store``, ``._*``, ``Thumbs.db``,
``desktop.ini``) are not images: every stage ignores them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

ID, LABEL = "id", "breed"
OS_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})  # lower case
DECODE = 3  # version of how an image file becomes pixels (2: EXIF orientation applied; 3: 16-bit grey scaled
#             to 8 bits); caches keep it


def is_hidden(name: str) -> bool:
    """Whether a file name is the OS's bookkeeping (dot-files, Thumbs.db, desktop.ini), not an image."""
    return name.startswith(".") or name.lower() in OS_FILES


def id_leaves_folder(image_id: str) -> bool:
    """Whether ``<folder>/<id>.jpg`` would name a file outside the folder (``../x``, ``/etc/x``)."""
    path = PurePath(image_id)
    return path.is_absolute() or ".." in path.parts or image_id.startswith("~")


@dataclass(frozen=True)
class Layout:
    """Paths of one data set in the Kaggle layout."""

    root: Path

    @property
    def labels_csv(self) -> Path:
        return self.root / "labels.csv"

    @property
    def sample_submission_csv(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    def train_image(self, image_id: str) -> Path:
        return _image(self.train_dir, image_id)

    def test_image(self, image_id: str) -> Path:
        return _image(self.test_dir, image_id)


def _image(folder: Path, image_id: str) -> Path:
    if id_leaves_folder(image_id):
        raise ValueError(f"id {image_id!r} names a file outside {folder}; ids are file names without .jpg")
    return folder / f"{image_id}.jpg"


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Any of the project's CSVs (labels, sample submission, folds, probability tables, answer keys): ids and
    labels as strings, and no text read as missing (pandas' defaults turn ``NA``, ``None``, ``null`` into NaN
    and ``007`` into 7). The one reader of them all."""
    try:
        return pd.read_csv(path, usecols=columns, dtype={ID: str, LABEL: str}, keep_default_na=False,
                           na_filter=False)  # pandas 3 parses a float written in full (repr) back exactly
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; it needs a header row (e.g. 'id,breed') and one row per "
                         "image") from None


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read an ``id,breed`` table (labels.csv or an answer key) with string columns."""
    df = read_table(path)
    missing = {ID, LABEL} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected a header 'id,breed'")
    return df[[ID, LABEL]]


def read_header(path: str | Path) -> list[str]:
    """A CSV's column names exactly as written (pandas would rename a repeated one to ``name.1``)."""
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def read_classes(sample_submission: str | Path) -> list[str]:
    """Class names in submission column order (every column of sample_submission.csv but ``id``)."""
    columns = read_header(sample_submission)
    if not columns or columns[0] != ID:
        raise ValueError(f"{sample_submission}: the first column must be 'id', got {columns[:1]}")
    return columns[1:]


def read_sample_ids(sample_submission: str | Path) -> list[str]:
    """Test ids in submission row order."""
    return read_table(sample_submission, columns=[ID])[ID].tolist()


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file, whatever its real format or mode, as a fully loaded RGB image, upright (its EXIF
    orientation applied)."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)  # a copy, independent of the closed file
        if im.mode == "RGB":
            return im
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.getchannel("A"))
            return background
        if im.mode == "I" or im.mode.startswith("I;16"):  # 16-bit grey (PNG, TIFF): scaled, not clipped at 255
            im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
        return im.convert("RGB")
