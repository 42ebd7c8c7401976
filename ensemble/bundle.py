"""A finished run in one file, to predict anywhere: every fold model (and refit) with its preprocessing, the
config that prediction needs, the blend weights and the fitted post-processing.

``python -m ensemble export RUN FILE`` writes it; ``predict-new --bundle FILE`` predicts from it alone, on
another machine, with the same probabilities as from the run folder. It holds only tensors and plain
containers, so it loads with ``torch.load(weights_only=True)``: opening a bundle runs no pickled code.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

from ensemble.atomic import torch_save
from ensemble.members import trained_parts

log = logging.getLogger(__name__)
FORMAT = 1


@dataclass
class Artifacts:
    """What predicting with a finished run needs: its resolved config, its post-processing parameters
    (postprocess/params.json: blend weights, fold temperatures, fitted temperature and clip) and its trained
    models' records, by (member, part: fold0 .. fold{k-1} or full)."""

    config: dict
    params: dict
    record: Callable[[str, str], dict]

    def parts(self) -> list[tuple[str, list[str], bool]]:
        """(member, its folds, whether it has a full-data refit), in the run's order."""
        return [(m.name, [p for p in parts if p != "full"], "full" in parts)
                for m, parts in trained_parts(self.config)]

    def blend_weights(self, names: list[str]) -> list[float]:
        """The blend's weight of each named member, matched by name: params.json keeps them by member, since
        the order of the members in the stored config need not be the blend's."""
        weights = self.params["weights"]
        if isinstance(weights, list):  # written before the weights were kept by name: only equal ones are safe
            if len(weights) != len(names) or len(set(weights)) > 1:
                raise ValueError("postprocess/params.json holds blend weights without the members' names (an "
                                 "older version wrote it): rerun `snakemake --cores all --forcerun postprocess` "
                                 "for this run, then predict or export again")
            weights = dict(zip(names, weights))
        if set(weights) != set(names):
            raise ValueError(f"the blend's weights are for members {sorted(weights)}, but the run's config makes "
                             f"{sorted(names)}: its postprocess/params.json and provenance/config.yaml disagree; "
                             "finish the run (snakemake --cores all) before predicting with it")
        return [weights[name] for name in names]


def from_run(run: Path) -> Artifacts:
    """A run folder's artifacts; each model is read when asked for."""
    for needed in ("provenance/config.yaml", "postprocess/params.json"):
        if not (run / needed).exists():
            raise FileNotFoundError(f"{run / needed} is missing: finish the run first (snakemake --cores all "
                                    f"--config run={run.name})")
    def record(member: str, part: str) -> dict:
        return torch.load(run / "train" / member / part / "model.pt", map_location="cpu", weights_only=True)

    config = yaml.safe_load((run / "provenance" / "config.yaml").read_text())
    require_finished(run, config)
    return Artifacts(config, json.loads((run / "postprocess" / "params.json").read_text()), record)


def require_finished(run: Path, config: dict) -> None:
    """Refuse a run caught mid-rerun: after a config edit, Snakemake retrains or predicts again some of its
    models before it fits the post-processing again, so until then the models, their predictions and
    postprocess/params.json are not of one run. As in Snakemake, a file newer than what was made from it
    marks the gap."""
    params = run / "postprocess" / "params.json"
    fitted = params.stat().st_mtime
    for member, parts in trained_parts(config):
        for part in parts:
            for path in (run / "train" / member.name / part / "model.pt",
                         run / "predict" / member.name / part / "test.csv"):
                if not path.exists() or path.stat().st_mtime > fitted:
                    state = "missing" if not path.exists() else f"newer than {params}"
                    raise ValueError(f"{run} is not finished: {path} is {state}, so a rerun has changed its "
                                     f"models since the post-processing was fitted; finish it (snakemake "
                                     f"--cores all --config run={run.name}) before predicting with it. A copy of "
                                     "a run folder must keep its files' times (cp -p, rsync -a)")


def export(run: Path, out: Path) -> dict:
    """Write the run's bundle to ``out``; returns what it holds (members and parts)."""
    artifacts = from_run(run)
    models = {member: {part: artifacts.record(member, part) for part in folds + (["full"] if refit else [])}
              for member, folds, refit in artifacts.parts()}
    torch_save({"format": FORMAT, "run": run.name, "config": artifacts.config, "params": artifacts.params,
                "models": models}, out)
    summary = {member: sorted(parts) for member, parts in models.items()}
    log.info("%s: %s", out, summary)
    return summary


def from_bundle(path: Path) -> Artifacts:
    """A bundle's artifacts (``export``), loaded with weights_only."""
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as e:  # not torch's
        raise ValueError(f"{path} is not a bundle (torch.load: {type(e).__name__}); make one with python -m "
                         "ensemble export RUN FILE") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bundle of format {FORMAT} (python -m ensemble export RUN FILE)")
    return Artifacts(bundle["config"], bundle["params"], lambda member, part: bundle["models"][member][part])
