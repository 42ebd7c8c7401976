import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemble.inputs import InputError, check_inputs
from ensemble.layout import Layout, is_hidden, load_rgb, read_classes, read_labels


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


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(levels * 257).save(tmp_path / "x.png")  # 0 ... 65535, mode I;16
    out = np.asarray(load_rgb(tmp_path / "x.png"))
    assert (out == levels[..., None]).all()


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


def wolf_and_poodle(labels, sample):
    labels.loc[0, "breed"] = "wolf"
    return labels, sample.assign(poodle=0.0)


def spaced_dingo(labels, sample):  # a stray space: quoted, or the two messages would look alike
    labels.loc[labels["breed"] == "dingo", "breed"] = " dingo"
    return labels, sample


@pytest.mark.parametrize("edit,unknown,unused", [(wolf_and_poodle, "wolf", "poodle"),
                                                 (spaced_dingo, "' dingo'", "dingo")])
def test_label_set_must_equal_submission_columns(tiny_dataset, edit, unknown, unused):
    labels, sample = edit(pd.read_csv(tiny_dataset / "labels.csv"), pd.read_csv(tiny_dataset / "sample_submission.csv"))
    labels.to_csv(tiny_dataset / "labels.csv", index=False)
    sample.to_csv(tiny_dataset / "sample_submission.csv", index=False)
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert f"not sample_submission columns: {unknown};" in str(err.value)
    assert f"no labelled image: {unused};" in str(err.value)


def test_an_empty_table_is_named(tiny_dataset):
    (tiny_dataset / "labels.csv").write_text("")
    with pytest.raises(ValueError, match=r"labels.csv is empty; it needs a header row"):
        check_inputs(tiny_dataset, k=3)


def test_classes_with_fewer_than_k_images_are_named(tiny_dataset):
    with pytest.raises(InputError, match=r"fewer than k=7 images: beagle \(6\), dingo \(6\), samoyed \(6\)"):
        check_inputs(tiny_dataset, k=7)


def test_missing_layout_says_what_is_expected(tmp_path):
    with pytest.raises(InputError, match="Kaggle layout"):
        check_inputs(tmp_path, k=2)


def test_duplicate_ids_and_empty_labels_are_named(tiny_dataset):
    labels = pd.read_csv(tiny_dataset / "labels.csv", dtype=str)
    labels.loc[1, "id"] = labels.loc[0, "id"]
    labels.loc[2, "breed"] = ""
    labels.to_csv(tiny_dataset / "labels.csv", index=False)
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert f"duplicate ids in labels.csv: {labels.loc[0, 'id']}" in str(err.value)
    assert f"empty label in labels.csv: {labels.loc[2, 'id']}" in str(err.value)


def test_zero_byte_and_truncated_images_are_unreadable(tiny_dataset):
    ids = pd.read_csv(tiny_dataset / "labels.csv")["id"]
    (tiny_dataset / "train" / f"{ids[0]}.jpg").write_bytes(b"")
    whole = (tiny_dataset / "train" / f"{ids[1]}.jpg").read_bytes()
    (tiny_dataset / "train" / f"{ids[1]}.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert f"{ids[0]} (" in str(err.value) and f"{ids[1]} (" in str(err.value)


def test_empty_test_folder_and_stray_test_images_are_named(tiny_dataset):
    test_dir = tiny_dataset / "test"
    (test_dir / "stray.jpg").write_bytes((tiny_dataset / "train" / next((tiny_dataset / "train").iterdir()).name)
                                         .read_bytes())
    with pytest.raises(InputError, match="not sample_submission ids: stray"):
        check_inputs(tiny_dataset, k=3)
    for p in test_dir.iterdir():
        p.unlink()
    with pytest.raises(InputError, match="test is empty"):
        check_inputs(tiny_dataset, k=3)


def test_paths_with_spaces_and_non_ascii_letters_work(tmp_path):
    from conftest import write_kaggle_dataset

    root = tmp_path / "dog breeds é ü 犬"
    write_kaggle_dataset(root, ["chien", "hund"], per_class=3, n_test=2)
    assert check_inputs(root, k=3)["n_train"] == 6


def test_ids_that_leave_their_folder_are_refused_by_name_and_never_read(tiny_dataset):
    labels = pd.read_csv(tiny_dataset / "labels.csv", dtype=str)
    test_id = pd.read_csv(tiny_dataset / "sample_submission.csv", dtype=str)["id"][0]
    labels.loc[0, "id"] = f"../test/{test_id}"  # would train on a test image
    labels.loc[1, "id"] = "/etc/hostname"
    labels.to_csv(tiny_dataset / "labels.csv", index=False)
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert f"outside their folder: ../test/{test_id}, /etc/hostname" in str(err.value)
    with pytest.raises(ValueError, match="outside"):
        Layout(tiny_dataset).train_image("../test/x")


def test_duplicate_sample_ids_and_class_columns_are_named(tiny_dataset):
    lines = (tiny_dataset / "sample_submission.csv").read_text().splitlines()
    header = lines[0] + ",dingo"  # a second dingo column
    rows = [line + ",0" for line in lines[1:]]
    (tiny_dataset / "sample_submission.csv").write_text("\n".join([header, *rows, rows[0]]) + "\n")
    with pytest.raises(InputError) as err:
        check_inputs(tiny_dataset, k=3)
    assert "duplicate class columns in sample_submission.csv: dingo" in str(err.value)
    assert f"duplicate ids in sample_submission.csv: {rows[0].split(',')[0]}" in str(err.value)


def test_os_bookkeeping_files_are_ignored(tiny_dataset):
    for folder in ("train", "test"):
        (tiny_dataset / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (tiny_dataset / folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (tiny_dataset / folder / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07")
    assert check_inputs(tiny_dataset, k=3)["n_test"] == 4
    assert [is_hidden(n) for n in (".DS_Store", "Thumbs.db", "desktop.ini", "._x.jpg", "thumbs.jpg")] == \
        [True, True, True, True, False]


def test_ids_and_classes_stay_strings_whatever_they_look_like(tmp_path):
    from conftest import write_kaggle_dataset

    root = tmp_path / "data"
    write_kaggle_dataset(root, ["NA", "None", "null"], per_class=3, n_test=2)
    labels = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    renamed = {old: new for old, new in zip(labels["id"][:3], ["dog 1a2b (1)", "007", "NaN"])}
    for old, new in renamed.items():
        (root / "train" / f"{old}.jpg").rename(root / "train" / f"{new}.jpg")
    labels["id"] = labels["id"].replace(renamed)
    labels.to_csv(root / "labels.csv", index=False)
    read = read_labels(root / "labels.csv")
    assert read["id"][:3].tolist() == ["dog 1a2b (1)", "007", "NaN"]
    assert read["breed"].unique().tolist() == ["NA", "None", "null"]
    assert read_classes(root / "sample_submission.csv") == ["NA", "None", "null"]
    summary = check_inputs(root, k=3)
    assert summary["train_per_class"] == {"NA": 3, "None": 3, "null": 3}
