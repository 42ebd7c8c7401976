"""Decode once: every image of a data set decoded a single time, stored resized for training to read.

Decoding a JPEG and resizing it costs milliseconds per image; cropping an already-resized uint8 array costs a
fraction of that. Training reads each image every epoch, in every fold and for every model, so the cache stage
decodes each original once: its shorter side resized to ``side`` px (the eval resize of the training size,
``round(size / crop_pct)`` with the backbone's crop ratio, bilinear or bicubic as its weights expect; one
folder per (side, interpolation): ``cache/{side}px-{interpolation}/``), its longer side kept whole up to
``MAX_ASPECT`` times the shorter (beyond that, centre-cropped to it), so a random resized crop sees the
whole photo, not only its centre square. A portrait photo is stored transposed, so every row is ``side``
high; the rows sit in one uint8 array per split
(``train.npy`` in labels.csv order, ``test.npy`` in sample_submission order, each
``(N, side, MAX_ASPECT * side, 3)``: twice the bytes of a centre square), with each row's stored width and
orientation in ``{split}_shapes.npy`` and its ids in ``{split}_ids.txt``. Training memory-maps the arrays, so
memory stays flat as the data grows and worker processes share the page cache instead of holding copies.

A row read back is the original resized by the eval transform's ``Resize(side)``, so the eval centre crop of
the cache is the eval centre crop of the original, pixel for pixel, when the photo is no longer than
``MAX_ASPECT`` to 1.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ensemble.atomic import clean_stale_temps, write_text
from ensemble.layout import DECODE, Layout, load_rgb, read_labels, read_sample_ids

log = logging.getLogger(__name__)
EVAL_CROP = 0.875
SPLITS = ("train", "test")
MAX_ASPECT = 2  # longer side kept whole up to this many times the shorter one
LAYOUT = 2  # of the stored arrays (1: centre squares)
FORMAT = f"{LAYOUT}.{DECODE}"  # layout and decode versions: the cache rule reruns when either changes


def cache_side(image_size: int, crop_pct: float = EVAL_CROP) -> int:
    """Shorter side (px) of the cached images for a training size: the eval resize at the backbone's crop
    ratio (``ensemble.transforms``)."""
    return round(image_size / crop_pct)


def cache_name(side: int, interpolation: str) -> str:
    """The cache folder of a side and resize interpolation: backbones with the same needs share it."""
    return f"{side}px-{interpolation}"


RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def decode_resized(path: Path, side: int, interpolation: str = "bilinear") -> tuple[np.ndarray, bool]:
    """((side, width, 3) uint8, portrait): the image decoded, its shorter side resized to ``side``, its longer
    side kept up to ``MAX_ASPECT * side`` (centre-cropped beyond), transposed when it is a portrait photo.

    PIL alone, with torchvision's arithmetic for a PIL image (``Resize(side)``: the longer side becomes
    ``int(side * long / short)``, bilinear or bicubic as the backbone's weights expect), resized in the
    original orientation and only then transposed, so
    a row read back equals the eval transform's resize of the original (a test holds the two equal on every
    shape it tries) while the cache's worker processes never import torch."""
    try:
        image = load_rgb(path)
    except OSError as e:  # PIL's UnidentifiedImageError too: name the file, not the worker's traceback
        raise ValueError(f"cannot decode {path} ({type(e).__name__}: {e}); remove or replace it") from None
    width, height = image.size
    longer = int(side * max(width, height) / min(width, height))
    size = (side, longer) if width <= height else (longer, side)
    if size != image.size:
        image = image.resize(size, resample=RESAMPLE[interpolation])
    portrait = height > width
    if portrait:
        image = image.transpose(Image.Transpose.TRANSPOSE)
    keep = min(longer, MAX_ASPECT * side)
    left = int(round((longer - keep) / 2.0))
    return np.asarray(image.crop((left, 0, left + keep, side)), dtype=np.uint8), portrait


def shapes_path(array: Path) -> Path:
    """The (N, 2) table of each row's stored width and portrait flag, beside ``{split}.npy``."""
    return array.with_name(f"{array.stem}_shapes.npy")


def write_split(paths: list[Path], out: Path, side: int, workers: int = 1, progress_every: int = 2000,
                interpolation: str = "bilinear") -> None:
    """Decode ``paths`` into one (N, side, MAX_ASPECT * side, 3) uint8 .npy at ``out`` and its shapes beside it,
    written in place of any old ones only when complete (a killed job leaves no half-written cache)."""
    tmp, shapes_tmp = (out.with_name(f".tmp-{name}.{os.getpid()}.npy") for name in (out.name, shapes_path(out).name))
    for name in (out.name, shapes_path(out).name):
        clean_stale_temps(out.with_name(name), f".tmp-{name}")  # of a killed build
    shape = (len(paths), side, MAX_ASPECT * side, 3)
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    shapes = np.zeros((len(paths), 2), dtype=np.int32)  # stored width, portrait
    started = time.perf_counter()
    try:
        with ProcessPoolExecutor(max(1, workers)) as pool:
            for i, (image, portrait) in enumerate(pool.map(partial(decode_resized, side=side,
                                                                   interpolation=interpolation), paths,
                                                           chunksize=16)):
                array[i, :, :image.shape[1]] = image
                shapes[i] = image.shape[1], portrait
                if (i + 1) % progress_every == 0:
                    log.info("%s: %d/%d images (%.0f/s)", out.name, i + 1, len(paths),
                             (i + 1) / (time.perf_counter() - started))
        array.flush()
        del array
        np.save(shapes_tmp, shapes)
        os.replace(shapes_tmp, shapes_path(out))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shapes_tmp.unlink(missing_ok=True)
    log.info("%s: %d images of %d px in %.1f s", out, len(paths), side, time.perf_counter() - started)


def build_cache(data_dir: Path, out_dir: Path, side: int, workers: int = 1,
                splits: tuple[str, ...] = SPLITS, interpolation: str = "bilinear") -> None:
    """The cache of a data set in the Kaggle layout: the splits' arrays and their ids (each split apart, so a
    changed test image leaves the training cache, and so the trained models, alone)."""
    layout = Layout(Path(data_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    image = {"train": layout.train_image, "test": layout.test_image}
    for split in splits:
        ids = {split: read_labels(layout.labels_csv)["id"].tolist() if split == "train"
               else read_sample_ids(layout.sample_submission_csv)}
        write_split([image[split](i) for i in ids[split]], out_dir / f"{split}.npy", side, workers,
                    interpolation=interpolation)
        write_text("".join(f"{i}\n" for i in ids[split]), out_dir / f"{split}_ids.txt")


def cache_images(paths: list[Path], out: Path, side: int, interpolation: str = "bilinear") -> CacheRows:
    """Decode ``paths`` as the cache rule decodes a split, into ``out`` (.npy): the rows of new images that a
    run whose models predicted from its cache must see (its TTA zooms start from these pixels too)."""
    write_split(paths, out, side, interpolation=interpolation)
    shapes = np.load(shapes_path(out))
    return CacheRows(out, tuple(range(len(paths))), tuple(int(w) for w in shapes[:, 0]),
                     tuple(bool(p) for p in shapes[:, 1]))


@dataclass(frozen=True)
class CacheRows:
    """Some rows of a cached split: what a dataset needs to read them (a path, not the array), with each row's
    stored width and orientation."""

    array: Path
    rows: tuple[int, ...]
    widths: tuple[int, ...]
    portrait: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.rows)


class ImageCache:
    """A cache folder written by ``build_cache``: rows of either split by image id."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._index: dict[str, dict[str, int]] = {}
        self._shapes: dict[str, np.ndarray] = {}

    def rows(self, split: str, ids: list[str]) -> CacheRows:
        if split not in self._index:
            if not shapes_path(self.root / f"{split}.npy").exists():
                raise ValueError(f"{self.root}: no {split} cache of this version (an older one stored centre "
                                 "squares only): delete the folder and rerun; Snakemake rebuilds it by itself")
            names = (self.root / f"{split}_ids.txt").read_text().splitlines()
            self._index[split] = {name: i for i, name in enumerate(names)}
            self._shapes[split] = np.load(shapes_path(self.root / f"{split}.npy"))
        index, shapes = self._index[split], self._shapes[split]
        missing = [i for i in ids if i not in index]
        if missing:
            raise ValueError(f"{self.root}: {len(missing)} id(s) not in the {split} cache, e.g. {missing[0]!r}; "
                             "the cache was built from other data - delete it and rerun")
        rows = [index[i] for i in ids]
        return CacheRows(self.root / f"{split}.npy", tuple(rows), tuple(int(w) for w in shapes[rows, 0]),
                         tuple(bool(p) for p in shapes[rows, 1]))

    @property
    def side(self) -> int:
        array = next(self.root / f"{s}.npy" for s in SPLITS if (self.root / f"{s}.npy").exists())
        return int(np.load(array, mmap_mode="r").shape[1])
