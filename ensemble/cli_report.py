"""Verbs that report: the plots, the leaderboard of runs, the ablation table, a run's provenance."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import yaml

from ensemble.atomic import write_csv, write_json, write_text
from ensemble.layout import read_table

log = logging.getLogger("ensemble")
VERBS = ["plots", "status", "leaderboard", "provenance", "ablation", "tracking_start", "tracking_finish"]


def add_plots(sub) -> None:
    p = sub.add_parser("plots", help="training curves, reliability, clipping sweep, confusion, per-class loss")
    p.add_argument("--histories", nargs="+", action="append", required=True, metavar=("MEMBER", "FILE"),
                   help="a member's name, then its history.csv files by fold; once per member")
    p.add_argument("--raw-oof", type=Path, required=True)
    p.add_argument("--post-oof", type=Path, required=True)
    for name in ("curves", "reliability", "sweep", "confusion", "per-class", "per-class-csv"):
        p.add_argument(f"--out-{name}", type=Path, required=True)


def run_plots(a) -> None:
    from ensemble.plots import all_plots

    histories = {member: [pd.read_csv(p) for p in paths] for member, *paths in a.histories}
    out = {"curves": a.out_curves, "reliability": a.out_reliability, "sweep": a.out_sweep,
           "confusion": a.out_confusion, "per_class": a.out_per_class, "per_class_csv": a.out_per_class_csv}
    all_plots(histories, read_table(a.raw_oof), read_table(a.post_oof), out)


def add_status(sub) -> None:
    p = sub.add_parser("status", help="where a run stands: one line per (member, fold) training job, and an ETA")
    p.add_argument("run", nargs="?", help="a run name under --results, or a run's folder (default: the run whose "
                                          "training changed last)")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--watch", type=float, nargs="?", const=10.0, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 10) while jobs are left")
    p.add_argument("--stale", type=float, default=120.0, metavar="SECONDS",
                   help="a job on another host is stopped after max(this, 3 epochs) without a heartbeat")


def run_status(a) -> None:
    import time

    from ensemble.status import report

    while True:
        text, active = report(a.run, min_stale=a.stale, results=a.results)
        if a.watch and sys.stdout.isatty():
            sys.stdout.write("\033[H\033[J")  # home and clear: the table redrawn in place
        print(text, flush=True)
        if not (a.watch and active):
            return
        time.sleep(a.watch)


def add_leaderboard(sub) -> None:
    p = sub.add_parser("leaderboard", help="every run under results/ with its scores, best CV first")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, help="also write the table as CSV (default: RESULTS/leaderboard.csv)")


def run_leaderboard(a) -> None:
    from ensemble.leaderboard import leaderboard

    table = leaderboard(a.results)
    write_csv(table, a.out or a.results / "leaderboard.csv", float_format="%.5g")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(table) else "no finished runs")


def add_ablation(sub) -> None:
    p = sub.add_parser("ablation", help="the ablation table from its rows' fold scores and training times")
    p.add_argument("--scores", nargs="+", action="append", required=True, metavar=("STEP", "FILE"),
                   help="a trained row's step, then the predict scores.json of its folds; once per row")
    p.add_argument("--train-benchmarks", nargs="+", action="append", required=True, metavar=("STEP", "FILE"),
                   help="a trained row's step, then the Snakemake benchmark files of its training jobs")
    p.add_argument("--oof", type=Path, nargs="+", required=True, help="the last trained row's OOF tables, by fold")
    p.add_argument("--changes-json", required=True, help="{step: what it changes}")
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-markdown", type=Path, required=True)


def run_ablation(a) -> None:
    from ensemble.ablation_table import ablation_table, markdown

    scores = {step: [json.loads(Path(p).read_text()) for p in paths] for step, *paths in a.scores}
    seconds = {step: [float(pd.read_csv(p, sep="\t")["s"].iloc[0]) for p in paths]
               for step, *paths in a.train_benchmarks}
    table = ablation_table(scores, seconds, [read_table(p) for p in a.oof], json.loads(a.changes_json))
    write_csv(table, a.out_table, float_format="%.6g")
    write_text(markdown(table), a.out_markdown)
    log.info("ablation:\n%s", markdown(table))


def add_provenance(sub) -> None:
    p = sub.add_parser("provenance", help="write a run's resolved config and software versions")
    p.add_argument("--config-json", required=True, help="the resolved config, as JSON")
    p.add_argument("--out-config", type=Path, required=True)
    p.add_argument("--out-versions", type=Path, required=True)


def run_provenance(a) -> None:
    from ensemble.provenance import versions

    write_text(yaml.safe_dump(json.loads(a.config_json), sort_keys=False), a.out_config)
    write_json(versions(Path.cwd()), a.out_versions)


def add_tracking_start(sub) -> None:
    p = sub.add_parser("tracking-start", help="find or make the run's parent MLflow run (tracking.mlflow)")
    p.add_argument("--name", required=True, help="the run's name (config's run)")
    p.add_argument("--uri", help="MLflow tracking URI (default: MLflow's own default)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", type=Path, required=True, help="results/{run}/tracking/mlflow.json")


def run_tracking_start(a) -> None:
    from ensemble.tracking import start_or_warn

    start_or_warn(a.out.parent.parent, a.out, name=a.name, uri=a.uri, experiment=a.experiment)


def add_tracking_finish(sub) -> None:
    p = sub.add_parser("tracking-finish", help="log the run's scores, plots and submission to its MLflow run")
    p.add_argument("--tracking", type=Path, required=True, help="results/{run}/tracking/mlflow.json")
    p.add_argument("--blend-scores", type=Path, required=True)
    p.add_argument("--postprocess-params", type=Path, required=True)
    p.add_argument("--test-scores", type=Path, help="score/scores.json, when there is an answer key")
    p.add_argument("--config", type=Path, required=True, help="the run's resolved config (provenance/)")
    p.add_argument("--artifacts", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)


def run_tracking_finish(a) -> None:
    from ensemble.tracking import finish_run

    metrics = {"cv_log_loss": json.loads(a.blend_scores.read_text())["overall"]["log_loss"],
               "cv_log_loss_postprocessed": json.loads(a.postprocess_params.read_text())["oof_log_loss"]}
    if a.test_scores:
        test = json.loads(a.test_scores.read_text())["submission"]
        metrics |= {"test_log_loss": test["log_loss"], "test_accuracy": test["accuracy"]}
    write_json(finish_run(a.tracking, metrics=metrics, artifacts=a.artifacts,
                          config=yaml.safe_load(a.config.read_text())), a.out)
