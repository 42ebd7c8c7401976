"""Shared fixtures: tiny data sets in the Kaggle layout, written by the tests themselves; background runs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# Set before torch loads its OpenMP runtime, and inherited by every job the tests start. The suite runs more
# threads than the machine has cores (two workers, each starting DAG jobs), and OpenMP's default spin-wait makes
# oversubscribed threads burn the cores others need: on 2 cores, two 2-thread training processes at once took
# 18-20 s each with it and 6-7 s with passive waiting (3.7 s alone). Speed only: results are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ensemble.data import FoldData
from ensemble.folds import assign_folds, split
from ensemble.layout import Layout

REPO = Path(__file__).resolve().parents[1]
DOGS10 = REPO.parent / "shared" / "data" / "dogs10"


def write_kaggle_dataset(root: Path, classes: list[str], per_class: int, n_test: int, size: int = 24,
                         seed: int = 0) -> pd.DataFrame:
    """A small random data set in the Kaggle layout; returns labels.csv's table."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(exist_ok=True)
    rows = []
    for c, name in enumerate(classes):
        for j in range(per_class):
            image_id = hashlib.md5(f"{seed}-{name}-{j}".encode()).hexdigest()
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            pixels[:, :, c % 3] //= 4  # a weak class signal
            Image.fromarray(pixels).save(root / "train" / f"{image_id}.jpg")
            rows.append((image_id, name))
    labels = pd.DataFrame(rows, columns=["id", "breed"])
    labels.to_csv(root / "labels.csv", index=False)
    test_ids = [hashlib.md5(f"{seed}-test-{j}".encode()).hexdigest() for j in range(n_test)]
    for image_id in test_ids:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "test" / f"{image_id}.jpg")
    sample = pd.DataFrame({"id": test_ids, **{c: 1 / len(classes) for c in classes}})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return labels


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    write_kaggle_dataset(root, ["beagle", "dingo", "samoyed"], per_class=6, n_test=4)
    return root


@pytest.fixture
def fold_data(tiny_dataset):
    """Fold 0 of the tiny data set (k=3), ready for ensemble.train.train_fold; torch on one thread."""
    torch.set_num_threads(1)  # bitwise-reproducible CPU kernels
    layout = Layout(tiny_dataset)
    classes = ["beagle", "dingo", "samoyed"]
    folds = assign_folds(pd.read_csv(layout.labels_csv, dtype=str), k=3, seed=0)
    train, val = split(folds, 0)
    index = {c: i for i, c in enumerate(classes)}
    return FoldData(classes, train["id"].tolist(), [layout.train_image(i) for i in train["id"]],
                    train["breed"].map(index).tolist(), [layout.train_image(i) for i in val["id"]],
                    val["breed"].map(index).tolist(), val["id"].tolist())


# A test marked `@pytest.mark.background.with_args(Run)` waits on a run begun when collection ended: for runs that
# sleep most of their time (the fake-SLURM DAG waits on the executor's status polls), so they overlap the CPU-bound
# tests instead of adding their wall time to the suite's; such tests run last. `Run(folder)` names the run's files
# without starting anything; `start()` begins it, `stop()` ends it and removes the folder. The test gets the
# object from the `background` fixture, which stops the run after the test. Deselected tests start nothing.
# Under pytest-xdist each worker collects every test and which one runs it is not known yet, so the first worker
# to create the run's folder starts it and the others attach to the same folder: the run must be one a process
# that did not start it can wait on (it reports through files). The last worker to finish stops what is left.
BACKGROUND = pytest.StashKey[object]()
BACKGROUND_ROOT = pytest.StashKey[Path]()


def pytest_configure(config):
    config.addinivalue_line("markers", "background(Run): Run(folder).start() runs from collection on; see conftest")


def background_root(config) -> Path:
    """Where background runs live: the same folder in every worker of one xdist run (they share its run id);
    alone, a new folder."""
    if uid := os.environ.get("PYTEST_XDIST_TESTRUNUID"):
        return Path(tempfile.gettempdir()) / f"ensemble-background-{uid}"
    if BACKGROUND_ROOT not in config.stash:
        config.stash[BACKGROUND_ROOT] = Path(tempfile.mkdtemp(prefix="ensemble-background-"))
    return config.stash[BACKGROUND_ROOT]


# Fixtures that build something costly once per module or session (a DAG run, a server). The suite runs on two
# pytest-xdist workers (pyproject's addopts, --dist loadgroup): the tests that use one of these form one group, so
# one worker builds it once; every other test goes to whichever worker is free.
SHARED_FIXTURES = ("run_dir", "unusual_run", "server", "default_demo")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)  # stable: others keep order
    for item in items:
        if shared := [name for name in SHARED_FIXTURES if name in item.fixturenames]:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for item in session.items:
        if marker := item.get_closest_marker("background"):
            folder = background_root(session.config) / hashlib.md5(item.nodeid.encode()).hexdigest()[:12]
            item.stash[BACKGROUND] = run = marker.args[0](folder)
            try:
                folder.mkdir(parents=True)  # atomic: one worker creates it and starts the run
            except FileExistsError:
                continue
            run.start()


def pytest_sessionfinish(session):
    """The last worker out (or the only process) stops the runs whose tests did not run, and removes the root."""
    runs = [item.stash[BACKGROUND] for item in session.items if BACKGROUND in item.stash]
    if not runs:
        return
    root = background_root(session.config)
    with (root / "finished").open("a+") as finished:
        fcntl.flock(finished, fcntl.LOCK_EX)  # released when the file closes
        finished.write("x")
        finished.seek(0)
        last = len(finished.read()) >= int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if last:
        for run in runs:
            run.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def background(request):
    """The run the test's `background` marker started; stopped after the test."""
    run = request.node.stash[BACKGROUND]
    yield run
    run.stop()
