"""``python -m ensemble status``: where a run stands, one line per (member, fold) training job, while it runs.

A job is *done* when its metrics file exists (then its out-of-fold log loss is shown, from its predictions
when they exist and are newer: a retrained fold's old ones are not), *running* while its progress file
(``ensemble.progress``) has a fresh heartbeat, *failed* when that file holds the exception's line, *stopped*
when its heartbeat went stale: its process is gone (same host), or nothing was heard for 3 epochs' time (at
least ``min_stale`` seconds), as a job killed by SIGKILL, an out-of-memory kill or a lost node leaves it. The
run's stage comes from which stages' outputs exist; its ETA from the epochs left and the mean epoch time,
spread over the jobs running at once.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ensemble.ablation import PREFIX as ABLATION_PREFIX
from ensemble.config import member_settings
from ensemble.members import trained_parts
from ensemble.progress import FILE

STALE_EPOCHS = 3


@dataclass
class Job:
    member: str
    fold: str  # fold0 .. fold{k-1}, or full (a refit)
    state: str  # not started | running | done | failed | stopped
    detail: str = ""
    epochs_left: int = 0
    epoch_seconds: float | None = None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_folder(run: str | Path | None, results: Path = Path("results")) -> Path:
    """A run's folder, from its name (results/NAME) or its path; None: the run under ``results`` whose
    training changed last."""
    if run is None:
        runs = [p.parent for p in results.glob("*/provenance")]
        if not runs:
            raise ValueError(f"no runs under {results}/: give a run name or a run's folder")
        return max(runs, key=lambda r: max((p.stat().st_mtime for p in r.glob("checkpoints/*/*/" + FILE)),
                                           default=r.stat().st_mtime))
    path = Path(run)
    if (path / "provenance").is_dir() or (path / "checkpoints").is_dir() or (path / "train").is_dir():
        return path
    if (results / str(run)).is_dir():
        return results / str(run)
    raise ValueError(f"no run {run!r}: give a run name under {results}/ or a run's folder")


def planned_jobs(folder: Path) -> list[tuple[str, str, int]]:
    """(member, part, epochs) of every training job: from the run's resolved config (provenance/), else the
    jobs that left a trace."""
    try:
        config = yaml.safe_load((folder / "provenance" / "config.yaml").read_text())
    except OSError:
        config = None
    found = {(p.parent.parent.name, p.parent.name) for p in folder.glob("checkpoints/*/*/" + FILE)}
    found |= {(p.parent.parent.name, p.parent.name) for p in folder.glob("train/*/*/metrics.json")}
    if not config:
        return [(member, part, 0) for member, part in sorted(found)]
    jobs = []
    for m, parts in trained_parts(config):
        settings = member_settings(config["models"][m.model], m.seed)
        jobs += [(m.name, p, settings["head_epochs"] + settings["epochs"]) for p in parts]
    ablation = sorted(job for job in found if job[0].startswith(ABLATION_PREFIX))  # `snakemake ablation`'s rows
    return jobs + [(member, part, 0) for member, part in ablation]


def _alive(progress: dict) -> bool | None:
    """Whether the job's process still runs: known only on the host that runs it."""
    if progress.get("host") != socket.gethostname():
        return None
    try:
        os.kill(progress["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_status(folder: Path, member: str, part: str, epochs: int, *, now: float, min_stale: float = 120.0) -> Job:
    """The state of one training job (see the module's docstring)."""
    logs = folder.parent.parent / "logs" / folder.name / "train" / member / f"{part}.log"
    metrics_file = folder / "train" / member / part / "metrics.json"
    metrics = _json(metrics_file)
    if metrics is not None:
        scores_file = folder / "predict" / member / part / "scores.json"
        scores = _json(scores_file) if _newer(scores_file, metrics_file) else None  # else the old model's
        loss = scores["log_loss"] if scores else metrics.get("val_log_loss")
        what = "OOF log loss" if scores else "val log loss"
        detail = f"{what} {loss:.4f}" if loss is not None else "trained on every labelled image"
        return Job(member, part, "done", f"{detail}, {metrics['epochs_run']} epochs in {metrics['seconds']:.0f} s")
    progress = _json(folder / "checkpoints" / member / part / FILE)
    if progress is None or progress["state"] == "done":  # done, but its outputs are gone: to be trained again
        return Job(member, part, "not started", epochs_left=epochs)
    state, detail = classify(progress, now=now, min_stale=min_stale)
    if state in ("failed", "stopped"):
        detail += f" (log: {logs})"
    return Job(member, part, state, detail, progress["epochs"] - progress["epoch"], epoch_estimate(progress, now))


def _newer(path: Path, than: Path) -> bool:
    """Whether ``path`` exists and was written no earlier than ``than``."""
    try:
        return path.stat().st_mtime >= than.stat().st_mtime
    except OSError:
        return False


def epoch_estimate(p: dict, now: float) -> float | None:
    """Seconds of one of the job's epochs to come: the running epoch's pace once a tenth of it is done, else
    the last epoch's (a head epoch on cached features is far quicker than the epochs after it)."""
    fraction = p["batches_done"] / p["batches"] if p.get("batches") else 0.0
    if p.get("epoch_started") and fraction >= 0.1:
        return (now - p["epoch_started"]) / fraction
    return p.get("last_epoch_seconds") or p.get("epoch_seconds")


def classify(progress: dict, *, now: float, min_stale: float = 120.0) -> tuple[str, str]:
    """(state, detail) of a job from its progress file alone: running, done, failed or stopped."""
    epochs, epoch = progress["epochs"], progress["epoch"]
    if progress["state"] in ("failed", "done"):
        return progress["state"], progress.get("error", "")
    age = now - progress["heartbeat"]
    alive = _alive(progress)
    if alive is False or (alive is None and age > max(min_stale, STALE_EPOCHS * (progress["epoch_seconds"] or 0))):
        why = "its process is gone" if alive is False else f"no heartbeat for {age:.0f} s"
        return "stopped", f"after epoch {epoch}/{epochs}: {why} (killed?); rerun its target to resume"
    return "running", _running(progress, now)


def _running(p: dict, now: float) -> str:
    fraction = p["batches_done"] / p["batches"] if p.get("batches") else 0.0
    text = f"epoch {p['epoch'] + 1}/{p['epochs']} ({fraction:.0%})"
    if p["train_loss"] is not None:
        text += f", train loss {p['train_loss']:.4f}"
    if p["val_loss"] is not None:
        text += f", val loss {p['val_loss']:.4f}"
    if p.get("images_per_second"):
        text += f", {p['images_per_second']:.0f} images/s"
    seconds = epoch_estimate(p, now)
    if seconds:
        text += f", ETA {_duration((p['epochs'] - p['epoch'] - fraction) * seconds)}"
    return text


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def stage(folder: Path, jobs: list[Job]) -> str:
    """What the run is doing, from the outputs that exist (and are newer than every trained model: a run that
    retrains is not done because the last run's submission is still there). The ablation's rows, a target of
    their own, do not count."""
    jobs = [j for j in jobs if not j.member.startswith(ABLATION_PREFIX)]
    done = sum(j.state == "done" for j in jobs)
    if done == len(jobs):  # every model trained (or none known)
        models = [folder / "train" / j.member / j.fold / "metrics.json" for j in jobs]
        for output, what in (("submission/submission.csv", "done: submission written"),
                             ("blend/scores.json", "post-processing and submission")):
            if all(_newer(folder / output, m) for m in models):
                return what
        if jobs:
            return "predicting and combining"
    if any(j.state != "not started" for j in jobs):
        return f"training: {done} of {len(jobs)} jobs done"
    if (folder / "folds" / "folds.csv").exists():
        return "training about to start (folds assigned)"
    return "preparing data (stamps, input check, folds, cache)"


def eta(folder: Path, jobs: list[Job]) -> float | None:
    """Seconds until training and prediction are done: epochs left x mean epoch time, plus predictions left x
    mean prediction time (from the run's benchmark files), spread over the jobs running at once."""
    times = [j.epoch_seconds for j in jobs if j.epoch_seconds]
    if not times:
        return None
    left = sum(j.epochs_left for j in jobs if j.state != "done") * sum(times) / len(times)
    predicted = [float(p.read_text().splitlines()[1].split("\t")[0])
                 for p in folder.glob("benchmarks/predict/*/*.tsv")]
    if predicted:
        waiting = sum(not (folder / "predict" / j.member / j.fold / "test.csv").exists() for j in jobs)
        left += waiting * sum(predicted) / len(predicted)
    return left / max(1, sum(j.state == "running" for j in jobs))


def report(run: str | Path | None, *, now: float | None = None, min_stale: float = 120.0,
           results: Path = Path("results")) -> tuple[str, bool]:
    """(the status table of a run as text, whether any training job is still to finish: running or not
    started)."""
    folder = run_folder(run, results)
    now = time.time() if now is None else now
    jobs = [job_status(folder, m, p, e, now=now, min_stale=min_stale) for m, p, e in planned_jobs(folder)]
    width = max([len(j.member) for j in jobs] + [6])
    lines = [f"run {folder.name}: {stage(folder, jobs)}"]
    left = eta(folder, jobs)
    if left is not None and any(j.state in ("running", "not started") for j in jobs):
        lines[0] += f"; ETA {_duration(left)}"
    lines += [f"  {j.member:<{width}}  {j.fold:<6}  {j.state:<11}  {j.detail}".rstrip() for j in jobs]
    return "\n".join(lines), any(j.state in ("running", "not started") for j in jobs)
