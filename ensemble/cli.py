"""``python -m ensemble VERB ...``: the command line each Snakemake rule calls.

This is the thin translation at the edge: flags become explicit keyword arguments of library functions.
Each verb has ``add_<verb>(subparsers)`` and ``run_<verb>(args)`` in the module of its stage (cli_data,
cli_train, cli_predict, cli_combine, cli_report); nothing below this layer sees ``args``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from ensemble import cli_combine, cli_data, cli_predict, cli_report, cli_train
from ensemble.gpus import pinned_gpu

log = logging.getLogger("ensemble")
STAGES = (cli_data, cli_train, cli_predict, cli_combine, cli_report)
VERBS = {verb: stage for stage in STAGES for verb in stage.VERBS}  # "lr_find" is the verb lr-find


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, stage in VERBS.items():
        getattr(stage, f"add_{verb}")(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ensemble.inputs import InputError
    from ensemble.submission import SubmissionError

    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    verb = args.verb.replace("-", "_")
    run = getattr(VERBS[verb], f"run_{verb}")
    wants_gpu = getattr(args, "device", "cpu") != "cpu"  # train, predict, lr-find unless pinned to the CPU
    try:
        with pinned_gpu() if wants_gpu else contextlib.nullcontext():
            run(args)
    except (InputError, SubmissionError, FileNotFoundError, ValueError) as e:
        if os.environ.get("ENSEMBLE_DEBUG"):
            raise
        log.error("%s", e)
        return 1
    return 0
