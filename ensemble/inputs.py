"""Input check: fail before any training, naming the ids, classes and files at fault and the fix.

Checks that every labelled id has a decodable image, ids are unique, labelled and name a file inside their
folder, the class columns are unique and equal the label set, each class has at least k images, and every
sample_submission id is unique and has a test image. Images in other modes (grayscale, CMYK, PNG bytes in a
.jpg) are fine: they load as RGB and are counted. The OS's bookkeeping files are ignored.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ensemble.layout import ID, LABEL, Layout, id_leaves_folder, is_hidden, read_classes, read_labels, read_sample_ids

log = logging.getLogger(__name__)
SHOWN = 10  # how many offending ids an error message lists before "and N more"


class InputError(ValueError):
    """The data set cannot be used as it is; the message lists every problem found."""


def _listing(items: list[str]) -> str:
    """Up to SHOWN items, each quoted where spaces at its ends would otherwise hide in the message."""
    shown = ", ".join(repr(i) if i != i.strip() else i for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def probe_image(path: Path) -> tuple[str | None, str | None]:
    """Decode one image fully. Returns (format/mode note, error); error is None when it loads."""
    try:
        with Image.open(path) as im:
            im.load()
            return f"{im.format}/{im.mode}", None
    except FileNotFoundError:
        return None, "missing"
    except Exception as e:  # PIL raises many types for corrupt files
        return None, f"unreadable ({type(e).__name__}: {e})"


def _probe_all(paths: list[Path], threads: int) -> list[tuple[str | None, str | None]]:
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # PIL decodes without the GIL
        return list(pool.map(probe_image, paths))


def _id_problems(file: str, ids: list[str]) -> list[str]:
    """Duplicate, empty and folder-leaving ids of labels.csv or sample_submission.csv."""
    problems = []
    seen: Counter = Counter(ids)
    dup = [i for i, n in seen.items() if n > 1]
    if dup:
        problems.append(f"duplicate ids in {file}: {_listing(dup)}; keep one row per id")
    if "" in seen:
        problems.append(f"empty ids in {file} ({seen['']} rows); every row needs the file name of its image")
    leaving = [i for i in seen if id_leaves_folder(i)]
    if leaving:
        problems.append(f"ids in {file} that name a file outside their folder: {_listing(leaving)}; an id is "
                        "the image's file name without .jpg")
    return problems


def _class_problems(classes: list[str]) -> list[str]:
    dup = [c for c, n in Counter(classes).items() if n > 1]
    problems = [f"duplicate class columns in sample_submission.csv: {_listing(dup)}; keep one column per class"]
    return problems if dup else []


def _label_problems(labels, classes: list[str], k: int) -> list[str]:
    problems = _id_problems("labels.csv", labels[ID].tolist())
    empty = labels[ID][labels[LABEL].str.strip() == ""].tolist()
    if empty:
        problems.append(f"ids with an empty label in labels.csv: {_listing(empty)}; label or remove them")
    counts = Counter(labels[LABEL][labels[LABEL].str.strip() != ""])
    unknown = sorted(set(counts) - set(classes))
    if unknown:
        problems.append(f"labels that are not sample_submission columns: {_listing(unknown)}; "
                        "fix the labels or add the columns")
    unused = sorted(set(classes) - set(counts))
    if unused:
        problems.append(f"sample_submission columns with no labelled image: {_listing(unused)}; "
                        "add images of these classes or drop the columns")
    small = [f"{c} ({n})" for c, n in sorted(counts.items()) if n < k and c in classes]
    if small:
        problems.append(f"classes with fewer than k={k} images: {_listing(small)}; "
                        "add images or lower folds.k")
    return problems


def _image_problems(kind: str, ids: list[str], paths: list[Path], threads: int) -> tuple[list[str], Counter]:
    results = _probe_all(paths, threads)
    modes = Counter(note for note, err in results if note)
    bad = [f"{i} ({p}: {err})" for i, p, (_, err) in zip(ids, paths, results) if err]
    problems = [f"{kind} images that are missing or unreadable: {_listing(bad)}; "
                f"replace the files or remove the ids"] if bad else []
    return problems, modes


def _test_folder_problems(layout: Layout, test_ids: list[str]) -> list[str]:
    if not test_ids:
        return [f"{layout.sample_submission_csv} has no rows; it must list every test id"]
    files = {p.stem for p in layout.test_dir.iterdir() if p.is_file() and not is_hidden(p.name)}
    if not files:
        return [f"{layout.test_dir} is empty; it must hold one <id>.jpg per sample_submission row"]
    extra = sorted(files - set(test_ids))
    if extra:
        return [f"test images that are not sample_submission ids: {_listing(extra)}; the test folder and "
                "sample_submission.csv must describe the same images"]
    return []


def require_layout(layout: Layout) -> None:
    """Fail, saying what is expected, unless the folder has the Kaggle layout's tables and folders."""
    for required in (layout.labels_csv, layout.sample_submission_csv, layout.train_dir, layout.test_dir):
        if not required.exists():
            raise InputError(f"{required} does not exist; data.dir must point at a folder in the Kaggle "
                             "layout (labels.csv, sample_submission.csv, train/, test/)")


def check_inputs(data_dir: str | Path, k: int, threads: int = 4, splits: tuple[str, ...] = ("train", "test")) -> dict:
    """Check a data set in the Kaggle layout; return a summary for the report. ``splits``: what to check,
    the training side (labels.csv, the class columns, train/) and the test side (the sample's ids, test/),
    so that a changed test image never re-checks, and so never retrains, the training side.

    Raises:
        InputError: listing every problem found, each with its fix.
    """
    layout = Layout(Path(data_dir))
    require_layout(layout)
    classes = read_classes(layout.sample_submission_csv)
    problems, summary = [], {}
    if "train" in splits:
        labels = read_labels(layout.labels_csv)
        problems += _class_problems(classes) + _label_problems(labels, classes, k)
        train_ids = [i for i in labels[ID] if not id_leaves_folder(i)]  # never read a file outside the folders
        train_problems, train_modes = _image_problems(
            "training", train_ids, [layout.train_image(i) for i in train_ids], threads)
        problems += train_problems
        summary.update(n_train=len(labels), classes=classes,
                       train_per_class=dict(sorted(Counter(labels[LABEL]).items())), train_formats=dict(train_modes))
    if "test" in splits:
        test_ids = read_sample_ids(layout.sample_submission_csv)
        problems += _id_problems("sample_submission.csv", test_ids) + _test_folder_problems(layout, test_ids)
        safe_test_ids = [i for i in test_ids if not id_leaves_folder(i)]
        test_problems, test_modes = _image_problems(
            "test", safe_test_ids, [layout.test_image(i) for i in safe_test_ids], threads)
        problems += test_problems
        summary.update(n_test=len(test_ids), test_formats=dict(test_modes))
    if problems:
        raise InputError(f"{len(problems)} problem(s) in {layout.root}:\n- " + "\n- ".join(problems))
    log.info("inputs ok (%s): %s", ", ".join(splits), json.dumps({k: v for k, v in summary.items()
                                                                  if k.startswith("n_")}))
    return summary
