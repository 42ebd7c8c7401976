"""Experiment tracking with MLflow (optional: ``pip install -e ".[mlflow]"``, ``tracking.mlflow`` in config).

One parent MLflow run per ``run``, made (or found again, by its tags) by the ``tracking_start`` rule, which
writes results/{run}/tracking/mlflow.json; a nested run per (member, fold) training job, with the job's
settings as params and each epoch's losses as they happen; the parent gets the CV, post-processed CV and
test scores, the plots and the submission from the ``tracking_finish`` rule.

Jobs find the tracking file from their own paths (a training job's checkpoint sits in
results/{run}/checkpoints/{member}/{part}/), not through declared inputs or params: tracking settings never
rerun anything. A resumed job keeps logging to the same nested run: its id is kept with the checkpoint. A
job that trains again from scratch (its config changed, or its checkpoint was stale) gets a new nested run,
and its earlier ones are tagged ``ensemble.superseded_by`` with the new run's id (and marked KILLED if they
were left RUNNING), so filtering on ``tags.`ensemble.superseded_by` IS NULL`` shows the current models only.
Tracking never fails a job: with the server down a job warns once and stops tracking, after at most one
request (retries off, 3 s timeout).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ensemble.atomic import write_json

log = logging.getLogger(__name__)
FILE = "mlflow.json"
RUN_TAG, LEVEL_TAG, MEMBER_TAG, PART_TAG = "ensemble.run", "ensemble.level", "ensemble.member", "ensemble.part"
SUPERSEDED_TAG = "ensemble.superseded_by"  # on a job's nested run once the job trains again from scratch


def _client(uri: str | None):
    """An MlflowClient that gives up fast: one request, 3 s, no retries with backoff."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def tracking_file(run_folder: Path) -> Path:
    return Path(run_folder) / "tracking" / FILE


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def _search(client, experiment_id: str, max_results: int, **tags) -> list:
    """The runs with these tags, newest first."""
    where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs([experiment_id], filter_string=where, order_by=["attributes.start_time DESC"],
                              max_results=max_results)


def _find(client, experiment_id: str, **tags) -> str | None:
    """The id of the newest run with these tags, or None."""
    runs = _search(client, experiment_id, 1, **tags)
    return runs[0].info.run_id if runs else None


def start_run(run_folder: Path, *, name: str, uri: str | None, experiment: str) -> dict:
    """Find or make the run's parent MLflow run and write the tracking file the jobs read; returns its
    content."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    parent = _find(client, experiment_id, **{RUN_TAG: name, LEVEL_TAG: "run"})
    if parent is None:
        parent = client.create_run(experiment_id, run_name=name, tags={RUN_TAG: name, LEVEL_TAG: "run"}).info.run_id
    else:
        client.update_run(parent, status="RUNNING")
    state = {"uri": uri or client.tracking_uri, "experiment": experiment, "experiment_id": experiment_id,
             "parent_run_id": parent, "run": name}
    write_json(state, tracking_file(run_folder))
    log.info("MLflow: run %s in experiment %r (%s)", parent, experiment, state["uri"])
    return state


class FoldTracker:
    """A training job's nested MLflow run, or nothing when the run is not tracked (or tracking failed)."""

    @classmethod
    def of_checkpoint(cls, checkpoint: Path, resumed_id: str | None, params: dict) -> FoldTracker:
        """The tracker of the job whose checkpoint is results/{run}/checkpoints/{member}/{part}/FILE."""
        parents = Path(checkpoint).parents
        folder = parents[3] if len(parents) > 3 and parents[2].name == "checkpoints" else Path("/nonexistent")
        return cls(folder, parents[1].name, parents[0].name, resumed_id, params)

    def __init__(self, run_folder: Path, member: str, part: str, resumed_id: str | None, params: dict):
        self.client = self.run_id = None
        path = tracking_file(run_folder)
        if not path.exists():
            return
        state = json.loads(path.read_text())
        if "parent_run_id" in state:  # else tracking is off: the server was down when the run started
            self._call(self._open, state, member, part, resumed_id, params)

    def _call(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 (tracking is for people: never the reason a job fails)
            log.warning("MLflow tracking stopped for this job: %s: %s", type(e).__name__, str(e).splitlines()[0])
            self.client = self.run_id = None

    def _open(self, state: dict, member: str, part: str, resumed_id: str | None, params: dict) -> None:
        from mlflow.entities import Param

        self.client = _client(state["uri"])
        if resumed_id:
            self.run_id = resumed_id
            self.client.update_run(resumed_id, status="RUNNING")
            return
        tags = {"mlflow.parentRunId": state["parent_run_id"], RUN_TAG: state["run"], LEVEL_TAG: "fold",
                MEMBER_TAG: member, PART_TAG: part}
        earlier = _search(self.client, state["experiment_id"], 100, **tags)
        self.run_id = self.client.create_run(state["experiment_id"], run_name=f"{member}/{part}",
                                             tags=tags).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in _flat("", params, {}).items()])
        for old in earlier:  # this job's earlier trainings (another config, or a stale checkpoint thrown away)
            if SUPERSEDED_TAG not in old.data.tags:
                self.client.set_tag(old.info.run_id, SUPERSEDED_TAG, self.run_id)
            if old.info.status == "RUNNING":  # killed, never resumed: it will not finish now
                self.client.set_terminated(old.info.run_id, "KILLED")

    def epoch(self, row: dict) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(row[key]), stamp, row["epoch"]) for key in
                   ("train_loss", "val_loss", "val_accuracy", "lr", "seconds")
                   if isinstance(row.get(key), int | float) and row[key] == row[key]]  # a refit's NaN: none
        self._call(self.client.log_batch, self.run_id, metrics)

    def finish(self, metrics: dict | None, failed: bool = False) -> None:
        if self.run_id is None:
            return
        if metrics:
            from mlflow.entities import Metric

            values = {k: metrics[k] for k in ("val_log_loss", "val_accuracy", "epochs_run", "seconds")
                      if isinstance(metrics.get(k), int | float)}
            self._call(self.client.log_batch, self.run_id, [Metric(k, float(v), 0, 0) for k, v in values.items()])
        if self.run_id is not None:
            self._call(self.client.set_terminated, self.run_id, "FAILED" if failed else "FINISHED")


def start_or_warn(run_folder: Path, out: Path, **settings) -> dict:
    """``start_run``, or, when MLflow cannot be reached, a warning and a tracking file that turns tracking off
    for the run's jobs (so they lose no time on it)."""
    try:
        return start_run(run_folder, **settings)
    except Exception as e:  # noqa: BLE001 (a tracking server down never stops the pipeline)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.warning("MLflow tracking is off for this run: %s", reason)
        state = {"off": reason}
        write_json(state, out)
        return state


def finish_run(tracking: Path, *, metrics: dict[str, float], artifacts: list[Path], config: dict) -> dict:
    """Log the run's scores, files and resolved config to its parent MLflow run and mark it finished; returns
    what was logged. The config's values become params the first time (MLflow refuses a param's new value);
    config.json follows every edit."""
    state = json.loads(Path(tracking).read_text())
    if "parent_run_id" not in state:
        log.warning("MLflow tracking was off for this run (%s): nothing logged", state.get("off"))
        return {"off": state.get("off")}
    client, parent = _client(state["uri"]), state["parent_run_id"]
    from mlflow.entities import Metric, Param

    if not client.get_run(parent).data.params:
        client.log_batch(parent, params=[Param(k[:250], v[:6000]) for k, v in _flat("", config, {}).items()])
    client.log_dict(parent, config, "config.json")
    client.log_batch(parent, [Metric(k, float(v), int(time.time() * 1000), 0) for k, v in metrics.items()])
    for path in artifacts:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")
    return {"parent_run_id": parent, "metrics": metrics, "artifacts": [str(p) for p in artifacts]}
