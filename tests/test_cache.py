"""The decode-once cache: what it stores, that reading it equals reading the originals, and that it is mapped,
not loaded."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ensemble.cache import ImageCache, build_cache, cache_side, decode_square
from ensemble.data import CachedImages, ImageFiles, image_dataset
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
    assert train.shape == (18, 27, 27, 3) and test.shape == (4, 27, 27, 3) and train.dtype == np.uint8
    ids = (tiny_dataset / "labels.csv").read_text().split()[1:]
    assert (cache.root / "train_ids.txt").read_text().split() == [line.split(",")[0] for line in ids]
    rows = cache.rows("train", [ids[3].split(",")[0]])
    np.testing.assert_array_equal(train[rows.rows[0]], decode_square(tiny_dataset / "train" /
                                                                     f"{ids[3].split(',')[0]}.jpg", 27))
    with pytest.raises(ValueError, match="not in the test cache"):
        cache.rows("test", ["nope"])


def test_eval_on_the_cache_equals_eval_on_the_originals(tiny_dataset, cache):
    ids = (cache.root / "train_ids.txt").read_text().split()
    transform = eval_transform(24, 0.875)
    files = ImageFiles([tiny_dataset / "train" / f"{i}.jpg" for i in ids], None, transform)
    cached = CachedImages(cache.rows("train", ids), None, transform)
    for i in range(len(ids)):
        assert torch.equal(files[i][0], cached[i][0]), ids[i]


@pytest.mark.parametrize(("width", "height", "side"), [(80, 40, 20), (37, 91, 27), (500, 375, 128), (333, 500, 73),
                                                   (24, 24, 27), (19, 30, 146), (101, 100, 64)])
def test_the_cached_square_is_torchvisions_resize_and_centre_crop(tmp_path, width, height, side):
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    expected = TF.center_crop(TF.resize(Image.fromarray(pixels), side, antialias=True), [side, side])
    np.testing.assert_array_equal(decode_square(tmp_path / "photo.png", side), np.asarray(expected))


def test_non_square_originals_keep_their_centre(tmp_path):
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255  # the centre square is white, the sides black
    Image.fromarray(wide).save(tmp_path / "wide.jpg", quality=100)
    square = decode_square(tmp_path / "wide.jpg", 20)
    assert square.shape == (20, 20, 3) and square.mean() > 240


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
