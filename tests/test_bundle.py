"""Predicting with a finished run, from its folder or a bundle: what predict-new refuses, and why."""

from pathlib import Path

import pytest

from ensemble.bundle import Artifacts, from_bundle
from ensemble.cache import decode_resized
from ensemble.inference import images_to_predict


def test_a_runs_blend_weights_are_matched_to_members_by_name():
    artifacts = Artifacts({}, {"weights": {"r18": 0.25, "a18": 0.75}}, record=None)
    assert artifacts.blend_weights(["a18", "r18"]) == [0.75, 0.25]
    with pytest.raises(ValueError, match="disagree"):
        artifacts.blend_weights(["a18", "r34"])
    assert Artifacts({}, {"weights": [0.5, 0.5]}, record=None).blend_weights(["a18", "r18"]) == [0.5, 0.5]
    with pytest.raises(ValueError, match="forcerun postprocess"):  # an older run's unnamed, unequal weights
        Artifacts({}, {"weights": [0.25, 0.75]}, record=None).blend_weights(["a18", "r18"])


def test_a_file_that_is_not_a_bundle_is_named(tmp_path):
    (tmp_path / "junk.bundle").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"junk.bundle is not a bundle .*python -m ensemble export"):
        from_bundle(tmp_path / "junk.bundle")


def test_a_missing_folder_and_an_undecodable_image_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        images_to_predict(tmp_path / "nowhere", None)
    (tmp_path / "broken.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot decode .*broken.jpg \(UnidentifiedImageError"):
        decode_resized(Path(tmp_path / "broken.jpg"), 32)
