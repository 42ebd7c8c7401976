"""Loader throughput: images/s decoding the originals vs reading the decode-once cache, beside the rate at
which the model consumes them; the loader's CPU time per image when crops and flips run in the loader (the
CPU path) vs on the device (the loader only slices the cache: ``ensemble.batch_augment``); and, on dogs10
when present, the epoch time of one fold either way.

    python benchmarks/loader.py [--repeats 5] [--size 112] [--threads 2]

Data: Kaggle-sized photos (longer side 500 px, JPEG quality 90: dogs10's photos enlarged when
../shared/data/dogs10 exists, else smooth synthetic ones), written once under results/benchmarks/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _bench import DOGS10, REPO, interleaved, photo_set, print_table, spread, timed

from ensemble.cache import ImageCache, build_cache, cache_side
from ensemble.data import CachedRows, image_dataset, make_loader, source
from ensemble.device import resolve_precision
from ensemble.layout import Layout, read_classes, read_labels
from ensemble.loops import autocast
from ensemble.models import build_model
from ensemble.transforms import train_transform


def _throughput(dataset, batch_size: int = 64) -> float:
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, workers=0, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(0))
    return len(dataset) / timed(lambda: [None for _ in loader])


def _cpu_ms_per_image(dataset, batch_size: int = 64) -> float:
    """Loader CPU time (this process, ms) per image of one pass, workers 0."""
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, workers=0, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(0))
    started = time.process_time()
    for _ in loader:
        pass
    return 1000 * (time.process_time() - started) / len(dataset)


def _model_rate(size: int, batch_size: int = 32, steps: int = 4) -> float:
    """Images/s of ResNet-18 training steps at ``size`` px (channels_last, at ``precision: auto``'s dtype)."""
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=10, hidden=[512]).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8).contiguous(
        memory_format=torch.channels_last)
    y = torch.arange(batch_size) % 10
    dtype = resolve_precision("auto", torch.device("cpu"))

    def step():
        with autocast(torch.device("cpu"), dtype):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    return batch_size * steps / timed(lambda: [step() for _ in range(steps)])


def _epoch_seconds(data: Path, cache: ImageCache | None, size: int) -> float:
    from ensemble.data import FoldData
    from ensemble.folds import assign_folds, split
    from ensemble.hparams import TrainConfig
    from ensemble.train import train_fold

    layout = Layout(data)
    classes = read_classes(layout.sample_submission_csv)
    train, val = split(assign_folds(read_labels(layout.labels_csv), k=5, seed=42), 0)
    index = {c: i for i, c in enumerate(classes)}
    fold = FoldData(classes, train["id"].tolist(), source(layout, cache, "train", train["id"].tolist()),
                    train["breed"].map(index).tolist(), source(layout, cache, "train", val["id"].tolist()),
                    val["breed"].map(index).tolist(), val["id"].tolist())
    config = TrainConfig(backbone="resnet18", hidden=(512,), image_size=size, head_epochs=0, epochs=1,
                         batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        metrics = train_fold(fold, config, device=torch.device("cpu"), workers=0, checkpoint_path=out / "c.pt",
                             model_path=out / "m.pt", history_path=out / "h.csv", metrics_path=out / "x.json")
    return metrics["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=112, help="training crop (px)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epoch-repeats", type=int, default=3, help="rounds of the dogs10 epoch comparison")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    work = REPO / "results" / "benchmarks"
    data = photo_set(work / "photos500")
    side = cache_side(a.size)
    cache_dir = work / f"photos500-cache-{side}px"
    build_seconds = timed(lambda: build_cache(data, cache_dir, side, workers=a.threads))
    cache = ImageCache(cache_dir)
    layout = Layout(data)
    ids = read_labels(layout.labels_csv)["id"].tolist()
    transform = train_transform(a.size, 0.875, "light")
    files = image_dataset(source(layout, None, "train", ids), None, transform)
    cached = image_dataset(source(layout, cache, "train", ids), None, transform)
    runs = interleaved({"originals": lambda: _throughput(files), "cache": lambda: _throughput(cached),
                        "model": lambda: _model_rate(a.size)}, a.repeats)
    ratio = [c / o for c, o in zip(runs["cache"], runs["originals"])]
    print_table(f"Loader throughput, {len(ids)} photos (longer side 500 px), {a.size} px crops, light preset, one "
                f"process; {a.repeats} interleaved rounds, median (min-max)",
                ["source", "images/s"],
                [["decode the originals", spread(runs["originals"])], ["decode-once cache", spread(runs["cache"])],
                 ["cache / originals", spread(ratio, "{:.2f}x")],
                 [f"ResNet-18 training step at {a.size} px ({a.threads} threads)", spread(runs["model"])]])
    print(f"\nBuilding the cache ({len(ids)} train + test images, {a.threads} processes): {build_seconds:.1f} s")
    rows = CachedRows(source(layout, cache, "train", ids), [0] * len(ids))
    cpu = interleaved({"loader": lambda: _cpu_ms_per_image(cached), "device": lambda: _cpu_ms_per_image(rows)},
                      a.repeats)
    print_table(f"Loader CPU time per image, {a.size} px crops from the cache, light preset; {a.repeats} "
                "interleaved rounds, median (min-max)", ["where crops and flips run", "loader CPU ms per image"],
                [["in the loader (PIL, the CPU path)", spread(cpu["loader"], "{:.3f}")],
                 ["on the device (the loader slices the cache)", spread(cpu["device"], "{:.3f}")],
                 ["ratio", spread([c / d for c, d in zip(cpu["loader"], cpu["device"])], "{:.1f}x")]])
    if DOGS10.exists():
        dogs_side = cache_side(a.size)
        dogs_cache = work / f"dogs10-cache-{dogs_side}px"
        build_cache(DOGS10, dogs_cache, dogs_side, workers=a.threads)
        epochs = interleaved({"originals": lambda: _epoch_seconds(DOGS10, None, a.size),
                              "cache": lambda: _epoch_seconds(DOGS10, ImageCache(dogs_cache), a.size)},
                             a.epoch_repeats)
        speedup = [o / c for o, c in zip(epochs["originals"], epochs["cache"])]
        print_table(f"One dogs10 fold epoch (800 train + 200 validation images, shorter side 160 px), ResNet-18 "
                    f"{a.size} px; {a.epoch_repeats} interleaved rounds, median (min-max)",
                    ["source", "epoch seconds"],
                    [["decode the originals", spread(epochs["originals"])], ["decode-once cache",
                                                                             spread(epochs["cache"])],
                     ["speedup", spread(speedup, "{:.2f}x")]])


if __name__ == "__main__":
    main()
