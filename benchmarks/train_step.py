"""The pipeline's training step vs a bare PyTorch loop on the same model and batches.

    python benchmarks/train_step.py [--repeats 7] [--steps 6] [--size 112] [--batch 32] [--threads 2] [--compile]
                                    [--precision auto|fp32|bf16|both]

Pipeline: ``ensemble.loops.run_epoch`` (uint8 batches normalised inside the model, log-softmax + NLL, grad
scaler, per-batch schedule step, loss read back, progress bar) on ``ensemble.models.build_model``. Bare:
``model(x)``, ``F.cross_entropy``, ``backward``, ``step`` on batches normalised beforehand (its best case).
Both use channels_last, the precision that ``precision: auto`` resolves to on this CPU (bf16 autocast where
the CPU computes bf16 natively, else fp32) and the same batches in memory, so the difference is the step's own
overhead. ``--precision both`` adds the pipeline's step in the other precision: the evidence for ``auto``.
Interleaved rounds; the table gives the median and spread.
``--compile`` adds the pipeline's step with the forward pass through ``torch.compile`` (what
``train.compile: true`` does), its compilation timed apart: the evidence for compiling on CUDA only.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _bench import interleaved, print_table, spread, timed

from ensemble.device import resolve_precision
from ensemble.loops import autocast, run_epoch
from ensemble.models import build_model
from ensemble.schedule import Cosine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=6, help="batches per timed run")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the step with torch.compile")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "both"], default="auto",
                        help="both: auto's choice, and the pipeline's step in the other precision too")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    both = a.precision == "both"
    dtype = resolve_precision("auto" if both else a.precision, cpu)
    other = None if dtype is not None else torch.bfloat16  # timed too with --precision both
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8, generator=g),
                torch.randint(0, 10, (a.batch,), generator=g)) for _ in range(a.steps)]

    def fresh():
        torch.manual_seed(0)
        model = build_model("resnet18", n_classes=10, hidden=[4096]).to(memory_format=torch.channels_last)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def pipeline(compiled: bool = False, dtype: torch.dtype | None = dtype):
        """The pipeline's step on a fresh model (its forward pass through torch.compile when ``compiled``) at
        ``dtype``: a function of some batches (all by default) that trains on them and returns the seconds per
        step."""
        model, opt = fresh()
        schedule = Cosine(opt, a.steps * (a.repeats + 1) + 1)
        forward = torch.compile(model) if compiled else None

        def run(chunk=batches) -> float:
            return timed(lambda: run_epoch(model, chunk, opt, schedule, scaler, device=cpu, dtype=dtype,
                                           frozen_backbone=False, forward=forward)) / len(chunk)
        return run

    model_b, opt_b = fresh()
    normalised = [(model_b.normalise(x).contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    head_only = model_b.head

    def bare_step(x, y):
        with autocast(cpu, dtype):
            logits = head_only(model_b.backbone(x))
        loss = F.cross_entropy(logits.float(), y)
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    def bare() -> float:
        model_b.train()
        return timed(lambda: [bare_step(x, y) for x, y in normalised]) / a.steps

    name = lambda d: "bf16" if d is not None else "fp32"  # noqa: E731
    variants = {"pipeline": pipeline(), "bare": bare}
    if both:
        variants["other"] = pipeline(dtype=other)
    compile_seconds = None
    if a.compile:
        variants["compiled"] = pipeline(compiled=True)
        compile_seconds = variants["compiled"](batches[:1])  # the first step compiles
    for run in variants.values():  # warm-up
        run()
    runs = interleaved(variants, a.repeats)
    ms = {k: [v * 1000 for v in vs] for k, vs in runs.items()}

    def beside(key: str, label: str, base: str, ratio: str) -> list[list[str]]:
        """A variant's row, and the row of its time over ``base``'s."""
        return [[label, spread(ms[key])], [ratio, spread([v / b for v, b in zip(runs[key], runs[base])], "{:.3f}")]]

    print_table(f"Training step, ResNet-18 + fc 4096 head, batch {a.batch} x {a.size} px, "
                f"{name(dtype)} + channels_last, {a.threads} threads; {a.repeats} interleaved rounds "
                f"of {a.steps} steps, median (min-max)", ["loop", "ms per step"],
                [["bare PyTorch", spread(ms["bare"])],
                 *beside("pipeline", "pipeline (run_epoch)", "bare", "pipeline / bare"),
                 *(beside("other", f"pipeline in {name(other)}", "pipeline", f"{name(other)} / {name(dtype)}")
                   if both else []),
                 *(beside("compiled", "pipeline, torch.compile (first step, compiling included: "
                          f"{compile_seconds:.0f} s)", "pipeline", "compiled / pipeline") if a.compile else [])])


if __name__ == "__main__":
    main()
