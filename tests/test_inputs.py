import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemble.inputs import InputError, check_inputs
from ensemble.layout import load_rgb


def test_good_dataset_passes_with_a_summary(tiny_dataset):
    summary = check_inputs(tiny_dataset, k=3, threads=2)
    assert summary["n_train"] == 18 and summary["n_test"] == 4
    assert summary["classes"] == ["beagle", "dingo", "samoyed"]
    assert summary["train_per_class"] == {"beagle": 6, "dingo": 6, "samoyed": 6}


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG"), ("P", "PNG"),
                                      ("RGBA", "PNG"), ("LA", "PNG"), ("I;16", "PNG")])
def test_every_mode_and_png_bytes_in_jpg_load_as_rgb(tmp_path, mode, fmt):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8))
    im = rgb.convert("L").convert(mode) if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / "x.jpg"  # the extension lies for PNG: decoding goes by content
    im.save(path, format=fmt)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (12, 10)


def test_grayscale_cmyk_and_png_in_jpg_pass_the_check(tiny_dataset):
    ids = pd.read_csv(tiny_dataset / "labels.csv")["id"]
    path = lambda i: tiny_dataset / "train" / f"{ids[i]}.jpg"  # noqa: E731
    Image.open(path(0)).convert("L").save(path(0), format="JPEG")
    Image.open(path(1)).convert("CMYK").save(path(1), format="JPEG")
    Image.open(path(2)).save(path(2), format="PNG")
    summary = check_inputs(tiny_dataset, k=3)
    assert summary["train_formats"]["JPEG/L"] == 1
    assert summary["train_formats"]["JPEG/CMYK"] == 1
    assert summary["train_formats"]["PNG/RGB"] == 1


def test_missing_and_unreadable_images_are_named(tiny_dataset):
    ids = pd.read_csv(tiny_dataset / "labels.csv")["id"]
    (tiny_dataset / "train" / f"{ids[0]}.jpg").unlink()
    (tiny_dataset / "train" / f"{ids[1]}.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    message = str(err.value)
    assert ids[0] in message and "missing" in message
    assert ids[1] in message and "unreadable" in message
    assert "replace the files or remove the ids" in message


def test_label_set_must_equal_submission_columns(tiny_dataset):
    labels = pd.read_csv(tiny_dataset / "labels.csv")
    labels.loc[0, "breed"] = "wolf"
    labels.to_csv(tiny_dataset / "labels.csv", index=False)
    sample = pd.read_csv(tiny_dataset / "sample_submission.csv").assign(poodle=0.0)
    sample.to_csv(tiny_dataset / "sample_submission.csv", index=False)
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert "not sample_submission columns: wolf" in str(err.value)
    assert "no labelled image: poodle" in str(err.value)


def test_classes_with_fewer_than_k_images_are_named(tiny_dataset):
    with pytest.raises(InputError, match=r"fewer than k=7 images: beagle \(6\), dingo \(6\), samoyed \(6\)"):
        check_inputs(tiny_dataset, k=7)


def test_missing_layout_says_what_is_expected(tmp_path):
    with pytest.raises(InputError, match="Kaggle layout"):
        check_inputs(tmp_path, k=2)
