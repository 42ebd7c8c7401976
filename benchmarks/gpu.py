"""GPU training throughput: ResNet-50 and ResNet-152 with AMP + channels_last, fed by the real loader.

    python benchmarks/gpu.py [--seconds 40] [--batch 128] [--size 224] [--workers 8] [--dtype bf16]
                             [--compile both|on|off] [--out TABLE.md]

Prepared for a CUDA machine; fits in 5 minutes (data generation + cache about 1 minute, then --seconds of
timed training per model and compile setting after a warm-up; with torch.compile the warm-up holds the
compilation, reported apart). ``--device cpu`` runs the same loop on the CPU (the device check's CPU mode,
at a tiny size). The loader is the pipeline's: the decode-once cache read by
worker processes, uint8 batches pinned and copied to the GPU, normalised there inside the model. It prints
images/s and the GPU's busy share: kernel time measured with CUDA events around each step, divided by the
wall time of the same steps (a starved GPU waits on the loader and its share drops), and, where NVML is
installed, the driver's own utilisation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _bench import REPO, print_table, synthetic_set

from ensemble.cache import ImageCache, build_cache, cache_side
from ensemble.data import image_dataset, make_loader, source
from ensemble.layout import Layout, read_labels
from ensemble.models import build_model
from ensemble.transforms import train_transform


def _nvml_utilisation() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return float(pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(0)).gpu)
    except Exception:  # noqa: BLE001 - optional
        return None


def _run(backbone: str, loader, device, dtype, seconds: float, compiled: bool = False) -> dict:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = build_model(backbone, n_classes=120, hidden=[4096]).to(device, memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    busy_ms, images, steps, utilisation, pending = 0.0, 0, 0, [], []
    started, warm_started = None, time.perf_counter()
    while True:
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            if cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
            with torch.autocast(device.type, dtype=dtype):
                loss = F.cross_entropy(forward(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if cuda:
                end.record()
            steps += 1
            if steps == 10:  # warm-up done (compilation, cuDNN autotuning, allocator)
                if cuda:
                    torch.cuda.synchronize()
                warm_up = time.perf_counter() - warm_started
                started, busy_ms, images, pending = time.perf_counter(), 0.0, 0, []
                continue
            if started is not None:
                if cuda:
                    pending.append((begin, end))
                images += len(y)
                if steps % 20 == 0:
                    if cuda:
                        torch.cuda.synchronize()
                        busy_ms += sum(b.elapsed_time(e) for b, e in pending)
                        pending = []
                    util = _nvml_utilisation() if cuda else None
                    if util is not None:
                        utilisation.append(util)
                    if time.perf_counter() - started > seconds:
                        wall = time.perf_counter() - started
                        return {"images_s": images / wall, "busy": busy_ms / 1000 / wall if cuda else None,
                                "nvml": sum(utilisation) / len(utilisation) if utilisation else None,
                                "memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                                "warm_up_s": warm_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet152"])
    parser.add_argument("--compile", choices=["both", "on", "off"], default="both")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    a = parser.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a GPU machine (--device cpu runs it on the CPU)")
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    work = REPO / "results" / "benchmarks"
    data = work / f"gpu-photos-{a.images}"
    if not (data / "labels.csv").exists():
        synthetic_set(data, n_train=a.images, n_test=100, size=(500, 375), classes=120)
    side = cache_side(a.size)
    cache_dir = work / f"gpu-photos-{a.images}-cache-{side}px"
    if not (cache_dir / "train.npy").exists():
        build_cache(data, cache_dir, side, workers=a.workers)
    labels = read_labels(Layout(data).labels_csv)
    classes = sorted(labels["breed"].unique())
    targets = labels["breed"].map({c: i for i, c in enumerate(classes)}).tolist()
    dataset = image_dataset(source(Layout(data), ImageCache(cache_dir), "train", labels["id"].tolist()), targets,
                            train_transform(a.size, 0.875, "light"))
    loader = make_loader(dataset, batch_size=a.batch, shuffle=True, workers=a.workers, device=device,
                         drop_last=True)
    rows = []
    settings = {"both": [False, True], "on": [True], "off": [False]}[a.compile]
    for backbone in a.backbones:
        for compiled in settings:
            r = _run(backbone, loader, device, dtype, a.seconds, compiled)
            na = lambda v, f: "n/a" if v is None else f.format(v)  # noqa: E731
            rows.append([backbone, "on" if compiled else "off", f"{r['images_s']:.0f}", na(r["busy"], "{:.0%}"),
                         na(r["nvml"], "{:.0f}%"), na(r["memory_gb"], "{:.1f}"), f"{r['warm_up_s']:.1f}"])
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    title = (f"{name}: training at {a.size} px, batch {a.batch}, {a.dtype} autocast + channels_last, loader = "
             f"decode-once cache + {a.workers} workers")
    header = ["backbone", "torch.compile", "images/s", "GPU busy (CUDA events)", "GPU utilisation (NVML)",
              "peak memory GB", "warm-up s (10 steps, compile included)"]
    print_table(title, header, rows)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(f"### {title}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
                         + "".join("| " + " | ".join(map(str, r)) + " |\n" for r in rows))


if __name__ == "__main__":
    main()
