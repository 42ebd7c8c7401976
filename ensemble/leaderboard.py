"""A leaderboard of every run under results/: what it trained and how it scored, best CV first."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import yaml

from ensemble.members import trained_parts


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_row(run: Path) -> dict | None:
    """One run's line, or None when it has no finished submission."""
    submission = run / "submission" / "submission.csv"
    config_file = run / "provenance" / "config.yaml"
    if not submission.exists() or not config_file.exists():
        return None
    config = yaml.safe_load(config_file.read_text())
    models = config["models"]
    seconds = sum(_json(run / "train" / m.name / part / "metrics.json").get("seconds", 0.0)
                  for m, parts in trained_parts(config) for part in parts)  # the run's jobs only: no ablation
    return {
        "run": run.name,
        "models": " + ".join(f"{m['backbone']}" for m in models.values()),
        "k": config["folds"]["k"],
        "epochs": " / ".join(str(m.get("head_epochs", 0) + m.get("epochs", 0)) for m in models.values()),
        "cv_log_loss": _json(run / "blend" / "scores.json").get("overall", {}).get("log_loss"),
        "cv_log_loss_postprocessed": _json(run / "postprocess" / "params.json").get("oof_log_loss"),
        "test_log_loss": _json(run / "score" / "scores.json").get("submission", {}).get("log_loss"),
        "train_seconds": round(seconds, 1),
        "date": dt.datetime.fromtimestamp(submission.stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
    }


def leaderboard(results: Path) -> pd.DataFrame:
    """Every finished run under ``results``, sorted by post-processed CV log loss (then raw CV)."""
    rows = [r for run in sorted(p for p in results.iterdir() if p.is_dir()) if (r := run_row(run))]
    table = pd.DataFrame(rows, columns=["run", "models", "k", "epochs", "cv_log_loss", "cv_log_loss_postprocessed",
                                        "test_log_loss", "train_seconds", "date"])
    return table.sort_values(["cv_log_loss_postprocessed", "cv_log_loss"], na_position="last").reset_index(drop=True)
