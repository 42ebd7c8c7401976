"""The yardstick: one model trained the way timm's train.py trains it, beside the pipeline, on the same data.

A Kaggler who does not use this project runs timm's train.py on the training images and predicts the test
set with the one model. This script does the same with timm's own library pieces and train.py's defaults
(timm's train.py itself is not in the wheel): ``create_loader`` with ``create_transform`` (random resized
crop scale 0.08-1, ratio 3/4-4/3, random interpolation, flip 0.5, colour jitter 0.4), label smoothing 0.1
(``LabelSmoothingCrossEntropy``), ``create_optimizer_v2`` (AdamW lr 1e-3, weight decay 0.05, none on norms and
biases), ``create_scheduler_v2`` (cosine stepped per epoch, 1 warmup epoch from 1e-5), channels_last with bf16
autocast where the CPU computes bf16 natively (the pipeline's ``precision: auto``; else fp32), batch 32, 2 loader
workers, eval at the model's own crop_pct and interpolation. The starting weights load as train.py's
``--initial-checkpoint`` would: the whole file, the classifier too when its shape fits
(``../shared/peer/README.md``).

It trains at ``--epochs`` (equal epochs per model) and at (k-1) x ``--epochs`` (the compute of k fold models,
each on (k-1)/k of the images), and with ``--configfile`` runs the pipeline on the same data through
Snakemake, timed, then prints one table: test log loss, accuracy and wall time of each. Measured with:

    python benchmarks/peer.py --data ../shared/data/dogs10 --weights ../shared/models/resnet18-imagenette.pt \
        --image-size 112 --epochs 10 --k 5 --configfile benchmarks/dogs10/recipe.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _bench import REPO, print_table
from PIL import Image

from ensemble.device import resolve_precision


class KaggleImages(torch.utils.data.Dataset):
    """(image, target) of a Kaggle-layout folder: ``table`` is an id,breed frame, images are ``folder/<id>.jpg``.
    ``transform`` is set by timm's ``create_loader``, as on its own datasets."""

    def __init__(self, folder: Path, table: pd.DataFrame, classes: list[str]):
        self.paths = [folder / f"{i}.jpg" for i in table["id"]]
        self.targets = [classes.index(b) for b in table["breed"]]
        self.transform = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = Image.open(self.paths[i]).convert("RGB")
        return self.transform(image) if self.transform else image, self.targets[i]


def initial_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict as train.py's ``--initial-checkpoint`` does, skipping tensors whose shape differs (a
    classifier for another number of classes)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing, _ = model.load_state_dict(fitting, strict=False)
    print(f"initial checkpoint {path}: {len(fitting)} tensors loaded, missing {missing}", file=sys.stderr)


def train_peer(data: Path, answers: Path, *, model_name: str, weights: Path | None, image_size: int, epochs: int,
               batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, workers: int = 2,
               seed: int = 0) -> dict:
    """Train one model on every labelled image for ``epochs``; its test log loss, accuracy and wall time."""
    import timm
    from timm.data import create_loader, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    started = time.perf_counter()
    timm.utils.random_seed(seed, 0)
    labels, test = pd.read_csv(data / "labels.csv", dtype=str), pd.read_csv(answers, dtype=str)
    classes = sorted(labels["breed"].unique())
    model = timm.create_model(model_name, num_classes=len(classes))
    if weights:
        initial_checkpoint(model, weights)
    model.to(memory_format=torch.channels_last)
    config = resolve_data_config({"input_size": (3, image_size, image_size)}, model=model)
    common = dict(input_size=config["input_size"], batch_size=batch_size, use_prefetcher=False,
                  mean=config["mean"], std=config["std"], num_workers=workers, crop_pct=config["crop_pct"])
    train_loader = create_loader(KaggleImages(data / "train", labels, classes), is_training=True,
                                 interpolation="random", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
                                 color_jitter=0.4, re_prob=0.0, **common)
    test_loader = create_loader(KaggleImages(data / "test", test, classes), is_training=False,
                                interpolation=config["interpolation"], **common)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay, momentum=0.9)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=epochs, warmup_epochs=1,
                                       warmup_lr=1e-5, min_lr=0.0, updates_per_epoch=len(train_loader))
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    dtype = resolve_precision("auto", torch.device("cpu"))  # the pipeline's rule, so both run alike
    autocast = lambda: torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)  # noqa: E731
    updates = 0
    for epoch in range(epochs):
        model.train()
        for x, y in train_loader:
            with autocast():
                loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            updates += 1
            scheduler.step_update(num_updates=updates)
        scheduler.step(epoch + 1)
        print(f"  peer {epochs} epochs: epoch {epoch + 1} done, last loss {loss.item():.3f}", file=sys.stderr)
    model.eval()
    logits, targets = [], []
    with torch.no_grad(), autocast():
        for x, y in test_loader:
            logits.append(model(x.contiguous(memory_format=torch.channels_last)).float())
            targets.append(y)
    logits, y = torch.cat(logits), torch.cat(targets)
    return {"log_loss": F.cross_entropy(logits, y).item(), "accuracy": (logits.argmax(1) == y).float().mean().item(),
            "seconds": time.perf_counter() - started}


def run_pipeline(configfile: Path, run: str, cores: int) -> dict:
    """The pipeline end to end through Snakemake, as a user runs it; its submission's test score and wall."""
    started = time.perf_counter()
    subprocess.run(["snakemake", "--cores", str(cores), "--configfile", "config.yaml", str(configfile),
                    "--config", f"run={run}", "--quiet", "rules"], cwd=REPO, check=True,
                   env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - started
    score = json.loads((REPO / "results" / run / "score" / "scores.json").read_text())["submission"]
    return {"log_loss": score["log_loss"], "accuracy": score["accuracy"], "seconds": seconds}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dogs10")
    p.add_argument("--answers", type=Path, help="answer key of test/ (default DATA/test_labels.csv)")
    p.add_argument("--weights", type=Path, help="starting weights (default: random)")
    p.add_argument("--model", default="resnet18", help="a timm model name")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=10, help="epochs of one fold model of the pipeline")
    p.add_argument("--k", type=int, default=5, help="the pipeline's folds: the peer also trains (k-1) x epochs")
    p.add_argument("--only", choices=["equal-epochs", "equal-compute"], help="train one of the two peers only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one peer run per seed; the table shows the "
                   "mean, and each run (200 test images make one run's log loss noisy)")
    p.add_argument("--configfile", type=Path, help="a pipeline config layered on config.yaml: run it too")
    p.add_argument("--run", default="peer-side-by-side", help="run name of the pipeline's run")
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the peer")
    return p


def main(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    answers = a.answers or a.data / "test_labels.csv"
    rows = []
    peers = {"equal-epochs": a.epochs, "equal-compute": (a.k - 1) * a.epochs}
    for what, epochs in peers.items():
        if a.only in (None, what):
            runs = [train_peer(a.data, answers, model_name=a.model, weights=a.weights, image_size=a.image_size,
                               epochs=epochs, seed=seed) for seed in a.seeds]
            mean = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
            each = "" if len(runs) == 1 else f", mean of seeds {a.seeds}: " + " ".join(
                f"{r['log_loss']:.3f}" for r in runs)
            rows.append([f"peer: timm recipe, one model, {epochs} epochs ({what}{each})", mean])
    if a.configfile:
        r = run_pipeline(a.configfile, a.run, a.cores)
        rows.append([f"pipeline: {a.configfile} ({a.k} folds x {a.epochs} epochs), submission", r])
    precision = "bf16" if resolve_precision("auto", torch.device("cpu")) else "fp32"  # the peer's and the pipeline's
    print_table(f"_{a.data.name} at {a.image_size} px, {a.model}, weights {a.weights or 'random'}, {precision}; test "
                f"set scored with {answers.name}_", ["what", "test log loss", "accuracy", "wall s"],
                [[w, f"{r['log_loss']:.3f}", f"{100 * r['accuracy']:.1f}%", f"{r['seconds']:.0f}"] for w, r in rows])


if __name__ == "__main__":
    main(get_args_parser().parse_args())
