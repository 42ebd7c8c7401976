"""The frozen (head-only) phase on cached features vs through the frozen backbone.

    python benchmarks/frozen_phase.py [--repeats 5] [--size 112] [--threads 2] [--folds 5] [--head-epochs 2]

One head epoch over a fold's training images (800 of dogs10 when ../shared/data/dogs10 exists, else 800
generated photos), from the decode-once cache: through the frozen ResNet-18 (BatchNorm in eval mode, no
backbone gradients: what the phase costs without cached features) vs on the backbone's cached features. The
second table charges the features their one-off cost: k folds x head epochs through the backbone, vs computing
the features once (views + the eval view, forward only) plus the k x head epochs on them.
"""

from __future__ import annotations

import argparse

import torch
from _bench import DOGS10, REPO, interleaved, photo_set, print_table, spread, timed
from torch.utils.data import TensorDataset

from ensemble.cache import ImageCache, build_cache, cache_side
from ensemble.data import image_dataset, make_loader, source
from ensemble.device import resolve_precision
from ensemble.features import backbone_features
from ensemble.finetune import freeze_backbone
from ensemble.layout import Layout, read_labels
from ensemble.loops import run_epoch
from ensemble.models import build_model
from ensemble.schedule import Cosine
from ensemble.transforms import train_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--views", type=int, default=None, help="cached views (default: the head epochs, as the "
                                                                 "workflow caps them)")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    dtype = resolve_precision("auto", cpu)
    data = DOGS10 if DOGS10.exists() else photo_set(REPO / "results" / "benchmarks" / "photos500")
    side = cache_side(a.size)
    cache_dir = REPO / "results" / "benchmarks" / f"{data.name}-cache-{side}px"
    if not (cache_dir / "train.npy").exists():
        build_cache(data, cache_dir, side, workers=a.threads)
    labels = read_labels(Layout(data).labels_csv).iloc[:800]
    ids, classes = labels["id"].tolist(), sorted(labels["breed"].unique())
    targets = torch.tensor(labels["breed"].map({c: i for i, c in enumerate(classes)}).to_numpy())
    images = source(Layout(data), ImageCache(cache_dir), "train", ids)
    transform = train_transform(a.size, 0.875, "light")
    dataset = image_dataset(images, targets.tolist(), transform)
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=len(classes), hidden=[4096]).to(memory_format=torch.channels_last)
    freeze_backbone(model, True)
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.01, momentum=0.9)
    schedule = Cosine(optimizer, 10_000)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    features = backbone_features(model, images, transform, device=cpu, dtype=dtype, batch_size=64, workers=0)

    def through() -> float:
        loader = make_loader(dataset, batch_size=32, shuffle=True, workers=0, device=cpu, drop_last=True)
        return timed(lambda: run_epoch(model, loader, optimizer, schedule, scaler, device=cpu, dtype=dtype,
                                       frozen_backbone=True))

    def cached() -> float:
        loader = make_loader(TensorDataset(features, targets), batch_size=32, shuffle=True, workers=0, device=cpu,
                             drop_last=True)
        return timed(lambda: run_epoch(model, loader, optimizer, schedule, scaler, device=cpu, dtype=dtype,
                                       frozen_backbone=True, on_features=True))

    def compute() -> float:  # one view's features of every image (forward only)
        return timed(lambda: backbone_features(model, images, transform, device=cpu, dtype=dtype, batch_size=64,
                                               workers=0))

    runs = interleaved({"through": through, "cached": cached, "features": compute}, a.repeats)
    speed = [t / c for t, c in zip(runs["through"], runs["cached"])]
    print_table(f"One head epoch, {len(ids)} images of {data.name} at {a.size} px, ResNet-18 frozen + fc 4096 head, "
                f"{a.threads} threads; {a.repeats} interleaved rounds, median (min-max)", ["", "seconds"],
                [["through the frozen backbone", spread(runs["through"], "{:.2f}")],
                 ["on cached features", spread(runs["cached"], "{:.3f}")],
                 ["speedup", spread(speed, "{:.0f}x")],
                 ["computing one view's features (forward only)", spread(runs["features"], "{:.2f}")]])
    k, h = a.folds, a.head_epochs
    v = a.views or h
    med = {name: sorted(vals)[len(vals) // 2] for name, vals in runs.items()}
    without = k * h * med["through"]
    with_features = (v + 1) * med["features"] + k * h * med["cached"]
    print_table(f"The whole head phase of a model: {k} folds x {h} head epochs (features: {v} views + the eval view, "
                "computed once)", ["", "seconds"],
                [["through the backbone", f"{without:.1f}"], ["cached features, including computing them",
                                                              f"{with_features:.1f}"],
                 ["speedup", f"{without / with_features:.1f}x"]])


if __name__ == "__main__":
    main()
