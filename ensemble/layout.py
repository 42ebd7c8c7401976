"""The Kaggle Dog Breed Identification folder layout, and reading images from it as RGB.

    DATA/labels.csv              id,breed               one row per training image
    DATA/train/<id>.jpg          training images
    DATA/test/<id>.jpg           test images
    DATA/sample_submission.csv   id,<class 1>,...,<class K>   the column order of a valid submission

Any other data set laid out the same way works. Images are decoded by content, not by extension, so
grayscale, CMYK, palette and PNG-in-.jpg files all load as 3-channel RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

ID, LABEL = "id", "breed"


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
        return self.train_dir / f"{image_id}.jpg"

    def test_image(self, image_id: str) -> Path:
        return self.test_dir / f"{image_id}.jpg"


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read an ``id,breed`` table (labels.csv or an answer key) with string columns."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {ID, LABEL} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected a header 'id,breed'")
    return df[[ID, LABEL]]


def read_classes(sample_submission: str | Path) -> list[str]:
    """Class names in submission column order (every column of sample_submission.csv but ``id``)."""
    columns = list(pd.read_csv(sample_submission, nrows=0).columns)
    if not columns or columns[0] != ID:
        raise ValueError(f"{sample_submission}: the first column must be 'id', got {columns[:1]}")
    return columns[1:]


def read_sample_ids(sample_submission: str | Path) -> list[str]:
    """Test ids in submission row order."""
    return pd.read_csv(sample_submission, usecols=[ID], dtype=str)[ID].tolist()


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file, whatever its real format or mode, as a fully loaded RGB image."""
    with Image.open(path) as im:
        im.load()
        if im.mode == "RGB":
            return im.copy()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im, mask=im.getchannel("A"))
            return background
        return im.convert("RGB")
