"""Predicting with a finished run, from its folder or a bundle: what predict-new refuses, and why."""

import json
import os
from pathlib import Path

import pytest
import yaml

from ensemble.bundle import Artifacts, from_bundle, from_run
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


def test_a_run_caught_mid_rerun_is_refused(tmp_path):
    """After a config edit retrains a fold (or predicts it again) the post-processing is refitted last; until
    then the run folder mixes two runs, and predicting with it would be silently wrong."""
    run = tmp_path / "results" / "r"
    (run / "provenance").mkdir(parents=True)
    (run / "provenance" / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "folds": {"k": 2}, "models": {"r18": {"refit": True}}}))
    made = []
    for part in ("fold0", "fold1", "full"):
        for path in (run / "train" / "r18" / part / "model.pt", run / "predict" / "r18" / part / "test.csv"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
            made.append(path)
    (run / "postprocess").mkdir()
    params = run / "postprocess" / "params.json"
    params.write_text(json.dumps({"weights": {"r18": 1.0}}))
    for path in made:
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(params, (1_000_100, 1_000_100))
    assert from_run(run).parts() == [("r18", ["fold0", "fold1"], True)]  # finished: params.json made last

    os.utime(run / "train" / "r18" / "fold1" / "model.pt", (1_000_200, 1_000_200))  # fold1 retrained since
    with pytest.raises(ValueError, match=r"not finished: .*fold1/model.pt is newer than .*params.json.*--config run=r"):
        from_run(run)
    os.utime(run / "train" / "r18" / "fold1" / "model.pt", (1_000_000, 1_000_000))
    os.utime(run / "predict" / "r18" / "full" / "test.csv", (1_000_200, 1_000_200))  # predicted again (new TTA)
    with pytest.raises(ValueError, match=r"full/test.csv is newer"):
        from_run(run)
    os.utime(run / "predict" / "r18" / "full" / "test.csv", (1_000_000, 1_000_000))
    (run / "train" / "r18" / "fold0" / "model.pt").unlink()  # Snakemake removed it to train it again
    with pytest.raises(ValueError, match=r"fold0/model.pt is missing"):
        from_run(run)
