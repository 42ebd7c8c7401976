"""Verbs of the data stage: the demo data set, the backbone table, the data's stamps, the input check, the
decode-once cache and the folds."""

from __future__ import annotations

from pathlib import Path

from ensemble.atomic import write_csv, write_json

VERBS = ["backbones", "demo_data", "fingerprint", "check_inputs", "cache", "folds"]


def add_demo_data(sub) -> None:
    p = sub.add_parser("demo-data", help="generate the built-in synthetic data set in the Kaggle layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def run_demo_data(a) -> None:
    from ensemble.demo_data import make_demo

    make_demo(a.out, n_classes=a.classes, n_train=a.train, n_test=a.test, size=a.size, seed=a.seed)


def add_backbones(sub) -> None:
    p = sub.add_parser("backbones", help="list backbone names with what their weights expect (size, crop, resize)")
    p.add_argument("pattern", nargs="?", default="", help="only names containing this text")
    p.add_argument("--write-table", type=Path, metavar="FILE",
                   help="write the name table from the installed torchvision and timm (for a new timm)")


def run_backbones(a) -> None:
    from ensemble.backbones import get_backbone, names, write_table

    if a.write_table:
        write_table(a.write_table)
        return
    found = [n for n in names() if a.pattern.lower() in n.lower()]
    width = max(map(len, found), default=0)
    for name in found:
        backbone = get_backbone(name)
        pre = backbone.preprocessing()
        print(f"{name:<{width}}  {backbone.source:<11}  {pre.input_size:>4} px  crop {pre.crop_pct:.3f}  "
              f"{pre.interpolation}{'  fixed size' if pre.fixed_input_size else ''}")
    if not found:
        raise ValueError(f"no backbone name contains {a.pattern!r}")


def add_fingerprint(sub) -> None:
    p = sub.add_parser("fingerprint", help="hash every image and table: one digest per split, for the DAG")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--store", type=Path, required=True, help="hashes kept by (path, size, mtime)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--out-train", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)


def run_fingerprint(a) -> None:
    from ensemble.fingerprint import write_stamps

    write_stamps(a.data, {"train": a.out_train, "test": a.out_test}, a.store, a.threads)


def add_check_inputs(sub) -> None:
    p = sub.add_parser("check-inputs", help="check a data set in the Kaggle layout before any training")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--split", choices=["train", "test"], nargs="+", default=["train", "test"])
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--out", type=Path, required=True, help="JSON summary, written only when all checks pass")


def run_check_inputs(a) -> None:
    from ensemble.inputs import check_inputs

    write_json(check_inputs(a.data, a.k, threads=a.threads, splits=tuple(a.split)), a.out)


def add_cache(sub) -> None:
    p = sub.add_parser("cache", help="decode every image once into memory-mappable uint8 arrays")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--side", type=int, required=True, help="px of the stored squares")
    p.add_argument("--interpolation", choices=["bilinear", "bicubic"], default="bilinear",
                   help="of the resize, as the backbone's weights expect")
    p.add_argument("--split", choices=["train", "test"], nargs="+", default=["train", "test"])
    p.add_argument("--threads", type=int, default=1, help="decoding processes")
    p.add_argument("--out", type=Path, required=True, help="the cache folder")


def run_cache(a) -> None:
    from ensemble.cache import build_cache

    build_cache(a.data, a.out, a.side, a.threads, splits=tuple(a.split), interpolation=a.interpolation)


def add_folds(sub) -> None:
    p = sub.add_parser("folds", help="assign stratified folds: a table of id, breed, fold")
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)


def run_folds(a) -> None:
    from ensemble.folds import assign_folds
    from ensemble.layout import read_labels

    write_csv(assign_folds(read_labels(a.labels), a.k, a.seed), a.out)
