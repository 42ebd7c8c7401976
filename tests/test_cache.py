"""The decode-once cache: what it stores, that reading it equals reading the originals, and that it is mapped,
not loaded."""

import pickle
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ensemble.backbones import get_backbone
from ensemble.cache import MAX_ASPECT, ImageCache, build_cache, cache_name, cache_side, decode_resized
from ensemble.data import CachedImages, ImageFiles, image_dataset
from ensemble.layout import load_rgb
from ensemble.models import build_model
from ensemble.transforms import eval_transform, train_transform


@pytest.fixture
def cache(tiny_dataset, tmp_path):
    out = tmp_path / "cache"
    build_cache(tiny_dataset, out, cache_side(24), workers=2)
    return ImageCache(out)


def test_cache_holds_every_image_once_in_label_and_submission_order(tiny_dataset, cache):
    train = np.load(cache.root / "train.npy", mmap_mode="r")
    test = np.load(cache.root / "test.npy", mmap_mode="r")
    assert cache.side == cache_side(24) == 27
    assert train.shape == (18, 27, 2 * 27, 3) and test.shape == (4, 27, 54, 3) and train.dtype == np.uint8
    ids = (tiny_dataset / "labels.csv").read_text().split()[1:]
    assert (cache.root / "train_ids.txt").read_text().split() == [line.split(",")[0] for line in ids]
    rows = cache.rows("train", [ids[3].split(",")[0]])
    stored, portrait = decode_resized(tiny_dataset / "train" / f"{ids[3].split(',')[0]}.jpg", 27)
    assert rows.widths == (27,) and rows.portrait == (False,) and stored.shape == (27, 27, 3)
    np.testing.assert_array_equal(train[rows.rows[0], :, :27], stored)
    with pytest.raises(ValueError, match="not in the test cache"):
        cache.rows("test", ["nope"])


def _photos(root, shapes):
    """A labelled data set whose photos have the given (width, height)s, each of its own random pixels."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    ids = [f"p{i}" for i in range(len(shapes))]
    for i, (w, h) in zip(ids, shapes):
        pixels = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"{i}.png")
        (root / "train" / f"{i}.png").rename(root / "train" / f"{i}.jpg")  # PNG named .jpg: decoded by content
        Image.fromarray(pixels).save(root / "test" / f"{i}.jpg", quality=95)
    (root / "labels.csv").write_text("id,breed\n" + "".join(f"{i},a\n" for i in ids))
    (root / "sample_submission.csv").write_text("id,a\n" + "".join(f"{i},1\n" for i in ids))
    return ids


SHAPES = [(80, 40), (37, 91), (500, 375), (333, 500), (24, 24), (19, 30), (101, 100), (160, 90)]


@pytest.mark.parametrize("size,backbone", [(24, "resnet18"), (64, "resnet18"), (112, "resnet18"),
                                           (64, "resnet50.a1_in1k"), (112, "convnext_tiny.fb_in22k_ft_in1k")])
def test_eval_on_the_cache_equals_eval_on_the_originals(tmp_path, size, backbone):
    """The cache takes its side (crop ratio) and resize interpolation from the backbone's weights."""
    pre = get_backbone(backbone).preprocessing()
    ids = _photos(tmp_path / "data", SHAPES)
    build_cache(tmp_path / "data", tmp_path / "cache", cache_side(size, pre.crop_pct), interpolation=pre.interpolation)
    cache = ImageCache(tmp_path / "cache")
    assert cache.side == round(size / pre.crop_pct)
    for split in ("train", "test"):
        transform = eval_transform(size, pre.crop_pct, pre.interpolation)
        files = ImageFiles([tmp_path / "data" / split / f"{i}.jpg" for i in ids], None, transform)
        cached = CachedImages(cache.rows(split, ids), None, transform)
        for i, shape in enumerate(SHAPES):
            if max(shape) <= MAX_ASPECT * min(shape):  # longer photos keep their centre only
                assert torch.equal(files[i][0], cached[i][0]), (split, shape)


@pytest.mark.parametrize(("width", "height", "side"), [(80, 40, 20), (37, 91, 27), (500, 375, 128), (333, 500, 73),
                                                   (24, 24, 27), (19, 30, 146), (101, 100, 64), (300, 100, 50)])
def test_the_cached_image_is_torchvisions_resize_of_the_whole_photo(tmp_path, width, height, side):
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    expected = np.asarray(TF.resize(Image.fromarray(pixels), side, antialias=True))
    stored, portrait = decode_resized(tmp_path / "photo.png", side)
    assert portrait == (height > width) and stored.shape[0] == side
    if portrait:
        expected = expected.transpose(1, 0, 2)
    longer = expected.shape[1]
    keep = min(longer, MAX_ASPECT * side)  # beyond 2:1, the centre 2:1 of the photo
    left = int(round((longer - keep) / 2))
    np.testing.assert_array_equal(stored, expected[:, left:left + keep])


def test_a_random_crop_can_see_the_whole_photo_not_only_its_centre(tmp_path):
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255  # the centre square is white, the sides black
    Image.fromarray(wide).save(tmp_path / "wide.jpg", quality=100)
    stored, _ = decode_resized(tmp_path / "wide.jpg", 20)
    assert stored.shape == (20, 40, 3)
    assert stored[:, :8].mean() < 15 and stored[:, -8:].mean() < 15 and stored[:, 12:28].mean() > 240
    # a crop of the whole stored photo (scale 1, its own aspect) holds the black sides, and portrait photos
    # come back upright
    tall = wide.transpose(1, 0, 2).copy()
    Image.fromarray(tall).save(tmp_path / "tall.jpg", quality=100)
    stored, portrait = decode_resized(tmp_path / "tall.jpg", 20)
    assert portrait and stored.shape == (20, 40, 3) and stored[:, :8].mean() < 15


def test_an_old_cache_of_centre_squares_is_refused_with_the_fix(tmp_path):
    (tmp_path / "old").mkdir()
    np.save(tmp_path / "old" / "train.npy", np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="older one stored centre squares.*delete the folder"):
        ImageCache(tmp_path / "old").rows("train", ["x"])


def test_the_dataset_pickles_as_a_path_and_maps_the_array_lazily(cache):
    dataset = image_dataset(cache.rows("test", (cache.root / "test_ids.txt").read_text().split()), None,
                            train_transform(24, 0.875, "light"))
    assert isinstance(dataset, CachedImages)
    image, target = dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.uint8 and target == -1
    assert isinstance(dataset._array, np.memmap)  # mapped, not read into memory
    clone = pickle.loads(pickle.dumps(dataset))  # what a worker process receives
    assert clone._array is None and len(pickle.dumps(dataset)) < 2000


def test_the_model_normalises_uint8_batches_itself():
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=3, hidden=[8]).eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.head(model.backbone((x.float() / 255 - mean) / std))
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x.float()), expected, rtol=1e-4, atol=1e-5)  # after MixUp: float
    assert "scale" not in model.state_dict()  # follows from the backbone; old model files still load


def test_a_killed_build_leaves_temp_files_that_the_next_build_removes(tiny_dataset, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    dead = _dead_pid()
    strays = [out / f".tmp-train.npy.{dead}.npy", out / f".tmp-train_shapes.npy.{dead}.npy"]
    for stray in strays:
        stray.write_bytes(b"half")
    build_cache(tiny_dataset, out, cache_side(24), splits=("train",))
    assert not any(s.exists() for s in strays)
    assert sorted(p.name for p in out.iterdir()) == ["train.npy", "train_ids.txt", "train_shapes.npy"]


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_photos_are_decoded_upright_by_their_exif_orientation(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # a white band on the left of a landscape photo
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the stored pixels rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = np.asarray(load_rgb(tmp_path / "phone.jpg"))
    assert upright.shape == (40, 20, 3)  # portrait, as a photo viewer shows it
    assert upright[:8].mean() > 200 and upright[-8:].mean() < 30  # the band is now at the top
    stored, portrait = decode_resized(tmp_path / "phone.jpg", 10)  # and the cache stores it the same way
    assert portrait and stored.shape == (10, 20, 3)


def test_the_resize_interpolation_is_the_weights_own():
    crop, bicubic = get_backbone("resnet50.a1_in1k").preprocessing().crop_pct, "bicubic"
    assert (crop, cache_side(112, crop), cache_name(cache_side(112, crop), bicubic)) == (0.95, 118, "118px-bicubic")
