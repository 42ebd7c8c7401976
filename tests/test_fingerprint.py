"""The data's and the weights' content as part of the DAG (ensemble/fingerprint.py)."""

import json
import os

import pandas as pd
import pytest
from PIL import Image

import ensemble.fingerprint as fp
from ensemble.inputs import InputError


def stamps_of(root, tmp_path):
    return fp.write_stamps(root, {s: tmp_path / f"{s}.json" for s in fp.SPLITS}, tmp_path / "store.json", threads=1)


def test_an_image_in_a_subfolder_is_part_of_its_splits_digest(tiny_dataset, tmp_path):
    labels = pd.read_csv(tiny_dataset / "labels.csv", dtype=str)
    first = labels["id"][0]
    (tiny_dataset / "train" / "sub").mkdir()
    os.replace(tiny_dataset / "train" / f"{first}.jpg", tiny_dataset / "train" / "sub" / f"{first}.jpg")
    labels.assign(id=labels["id"].replace({first: f"sub/{first}"})).to_csv(tiny_dataset / "labels.csv", index=False)
    before = stamps_of(tiny_dataset, tmp_path)
    assert before["train"]["files"] == 18
    Image.new("RGB", (24, 24)).save(tiny_dataset / "train" / "sub" / f"{first}.jpg")  # same name, new pixels
    after = stamps_of(tiny_dataset, tmp_path)
    assert after["train"]["sha256"] != before["train"]["sha256"]
    assert after["test"] == before["test"]


def test_a_flat_folder_keeps_the_digest_it_had(tiny_dataset, tmp_path):
    names = fp._images(tiny_dataset / "train")
    assert names == sorted(p.name for p in (tiny_dataset / "train").iterdir())  # file names, as before subfolders


def test_a_weights_file_digest_follows_its_bytes_and_is_read_once(tmp_path, monkeypatch):
    weights, store = tmp_path / "w.pt", tmp_path / "store.json"
    weights.write_bytes(b"one")
    first = fp.file_digest(weights, store)
    assert first == fp.content_hash(weights)
    reads = []
    monkeypatch.setattr(fp, "content_hash", lambda path: reads.append(path) or "x")
    assert fp.file_digest(weights, store) == first and reads == []  # same size and mtime: from the store
    monkeypatch.undo()
    weights.write_bytes(b"two")
    os.utime(weights, ns=(1, 1))
    assert fp.file_digest(weights, store) not in (first, "missing")
    assert fp.file_digest(tmp_path / "absent.pt", store) == "missing"


def test_stamps_of_data_whose_table_is_gone_fail_at_load_unless_a_rule_makes_it(tiny_dataset, tmp_path):
    stamps = {s: tmp_path / f"{s}.json" for s in fp.SPLITS}
    fp.write_stamps(tiny_dataset, stamps, tmp_path / "store.json", threads=1)
    assert fp.refresh_stamps(tiny_dataset, stamps, tmp_path / "store.json", threads=1) == []
    (tiny_dataset / "labels.csv").unlink()
    with pytest.raises(InputError, match="labels.csv does not exist"):
        fp.refresh_stamps(tiny_dataset, stamps, tmp_path / "store.json", threads=1)
    assert fp.refresh_stamps(tiny_dataset, stamps, tmp_path / "store.json", threads=1, made_by_rule=True) == []
    assert json.loads(stamps["train"].read_text())["files"] == 18  # left for the rule that makes the data


def test_a_same_size_rewrite_with_its_mtime_put_back_is_hashed_again(tmp_path):
    weights, store = tmp_path / "w.pt", tmp_path / "store.json"
    weights.write_bytes(b"one")
    times = os.stat(weights)
    first = fp.file_digest(weights, store)
    weights.write_bytes(b"two")  # same size; cp -p, rsync -t or touch -r then put the old mtime back
    os.utime(weights, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(weights).st_mtime_ns == times.st_mtime_ns
    assert fp.file_digest(weights, store) == fp.content_hash(weights) != first


def test_images_in_a_linked_folder_count_and_a_link_loop_ends(tiny_dataset, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (24, 24)).save(outside / "x.jpg")
    (tiny_dataset / "train" / "linked").symlink_to(outside, target_is_directory=True)
    (outside / "loop").symlink_to(tiny_dataset / "train", target_is_directory=True)  # back up to the root
    names = fp._images(tiny_dataset / "train")
    assert "linked/x.jpg" in names and not any(n.startswith("linked/loop/") for n in names)
    before = stamps_of(tiny_dataset, tmp_path)
    Image.new("RGB", (24, 24), "white").save(outside / "x.jpg")  # new pixels behind the link
    assert stamps_of(tiny_dataset, tmp_path)["train"]["sha256"] != before["train"]["sha256"]
