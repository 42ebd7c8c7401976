#!/usr/bin/env bash
# Every CPU benchmark, one after the other (they must not share the cores), tables to stdout.
set -euo pipefail
cd "$(dirname "$0")"
export TQDM_DISABLE=1  # the training loops' progress bars would interleave with the tables
for script in loader.py train_step.py frozen_phase.py pipeline_overhead.py scaling.py fingerprint.py; do
    echo "## ${script}"
    python "${script}" "$@"
done
