"""The data's content as part of the DAG: one digest per split, from a content hash of every file.

Snakemake decides what reruns from file times, rule parameters and code, never from what is inside a folder
of images that no rule declares. So each split gets a small stamp file, ``results/{run}/inputs/{split}.json``:
the SHA-256 of its table (labels.csv for train, sample_submission.csv for test, and the class header for
both) and of the sorted (file name, content hash) pairs of its image folder. Every rule that reads a split's
images or table declares that split's stamp as an input. The ``fingerprint`` rule writes the stamps; when
the workflow loads, :func:`refresh_stamps` rewrites a stamp whose digest no longer matches the data, so
Snakemake sees an updated input and reruns exactly the rules that read that split.

Hashing 20,000 photos reads every byte once; the hashes are kept in a store keyed by path, with each file's
size, mtime and ctime, so later loads only ``stat`` the files. A copied folder is hashed again, to the same
digest, so nothing retrains. Snakemake compares small inputs by checksum when their mtime is newer, so a stamp
rewritten with the same digest (or any unchanged small output) triggers nothing downstream.

A model's local weights file is hashed through the same store (:func:`file_digest`); the workflow passes
its digest as a param of the rules that start from it, so new bytes under the same path retrain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ensemble.atomic import write_json
from ensemble.layout import Layout, is_hidden, read_header

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
CHUNK = 1 << 20


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    """What says a file is unchanged since it was hashed: size, mtime and ctime. A same-size rewrite whose
    mtime is put back (``cp -p``, ``rsync -t``, ``tar -x``, ``touch -r``) still gets a new ctime, which no
    tool can set, so it is hashed again."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class HashStore:
    """Content hashes of files, reused while a file's size, mtime and ctime are unchanged; a JSON file on disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())["files"]
        except (OSError, ValueError, KeyError):  # absent, or damaged: hash again
            self.entries = {}
        self.changed = False

    def hashes(self, folder: Path, names: list[str], threads: int = 4) -> list[str]:
        """The content hash of each named file of ``folder``, hashing only those new or changed since stored
        (one ``stat`` per file otherwise)."""
        root = os.path.realpath(folder)
        keys = [os.path.join(root, n) for n in names]
        stats = [_stat_key(os.stat(k)) for k in keys]
        todo = [i for i, (k, s) in enumerate(zip(keys, stats)) if self.entries.get(k, [])[:-1] != s]
        if todo:
            with ThreadPoolExecutor(max(1, threads)) as pool:  # hashlib hashes without the GIL
                for i, h in zip(todo, pool.map(content_hash, [keys[i] for i in todo])):
                    self.entries[keys[i]] = [*stats[i], h]
            self.changed = True
            log.info("hashed %d new or changed file(s) of %d", len(todo), len(names))
        return [self.entries[k][-1] for k in keys]

    def save(self) -> None:
        if self.changed:
            write_json({"files": self.entries}, self.path)
            self.changed = False


def _images(folder: str | os.PathLike, prefix: str = "", above: frozenset[str] = frozenset()) -> list[str]:
    """The paths of every file under an image folder, relative to it and sorted (an id may name a subfolder:
    ``sub/x``), without the OS's bookkeeping files. Linked folders are followed, as the jobs that read the
    images follow them, except a link back to a folder above it (a loop)."""
    real = os.path.realpath(folder)
    if real in above:
        log.warning("%s links back to %s: not followed", folder, real)
        return []
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if entry.is_dir():
                names += _images(entry.path, f"{prefix}{entry.name}/", above | {real})
            elif entry.is_file():
                names.append(prefix + entry.name)
    return sorted(names)


def file_digest(path: str | os.PathLike, store: Path) -> str:
    """The content hash of one file (a model's local weights), through the store, so an unchanged file is
    not read again; ``missing`` when there is none (the job that reads it says so)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return "missing"
    hash_store = HashStore(store)
    (digest,) = hash_store.hashes(path.parent, [path.name], threads=1)
    hash_store.save()
    return digest


def split_digests(data_dir: Path, store: HashStore, threads: int = 4) -> dict[str, dict]:
    """{split: {"sha256", "files"}} of a data set in the Kaggle layout."""
    layout = Layout(Path(data_dir))
    header = ",".join(read_header(layout.sample_submission_csv))  # the classes: both splits depend on them
    tables = {"train": layout.labels_csv, "test": layout.sample_submission_csv}
    folders = {"train": layout.train_dir, "test": layout.test_dir}
    digests = {}
    for split in SPLITS:
        names = _images(folders[split]) if folders[split].is_dir() else []
        digest = hashlib.sha256(f"classes {header}\n".encode())
        digest.update(f"table {content_hash(tables[split])}\n".encode())
        for name, h in zip(names, store.hashes(folders[split], names, threads)):
            digest.update(f"{name} {h}\n".encode())
        digests[split] = {"split": split, "files": len(names), "sha256": digest.hexdigest()}
    store.save()
    return digests


def write_stamps(data_dir: Path, stamps: dict[str, Path], store: Path, threads: int = 4) -> dict[str, dict]:
    """Hash the data and write each split's stamp."""
    from ensemble.inputs import require_layout

    require_layout(Layout(Path(data_dir)))
    digests = split_digests(data_dir, HashStore(store), threads)
    for split, path in stamps.items():
        write_json(digests[split], path)
    return digests


def refresh_stamps(data_dir: Path, stamps: dict[str, Path], store: Path, threads: int = 4,
                   made_by_rule: bool = False) -> list[str]:
    """When the workflow loads: rewrite the stamps whose data changed since they were written; returns the
    splits rewritten. Stamps not written yet (a first run) are left to the ``fingerprint`` rule, and so are
    the tables of data a rule makes (``made_by_rule``: the demo) while they are missing. Otherwise a missing
    table or folder fails here, with what the layout needs."""
    from ensemble.inputs import require_layout

    layout = Layout(Path(data_dir))
    if not all(Path(p).exists() for p in stamps.values()):
        return []
    if made_by_rule and not (layout.labels_csv.exists() and layout.sample_submission_csv.exists()):
        return []  # the rule that makes the data runs again, and the fingerprint rule after it
    require_layout(layout)  # stamps of data that is gone: never plan the run as done on the old data
    digests = split_digests(data_dir, HashStore(store), threads)
    changed = []
    for split, path in stamps.items():
        try:
            old = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            old = None
        if old != digests[split]:
            write_json(digests[split], path)
            changed.append(split)
            log.warning("the %s data in %s changed since the last run: the rules that read it rerun", split,
                        data_dir)
    return changed


def default_store(results: str | os.PathLike) -> Path:
    """Where the hashes are kept: one store under results/, shared by every run."""
    return Path(results) / ".data-hashes.json"
