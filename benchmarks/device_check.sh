#!/usr/bin/env bash
# The prepared check for a GPU machine, one command: a 30-second smoke test that fails fast, the real DAG on
# CUDA with two GPU jobs contending for the one GPU's slot lock, then benchmarks/gpu.py (ResNet-50 and
# ResNet-152, with and without torch.compile). Leaves device_check.tar.gz (logs, metrics, the DAG's
# benchmark files) and device_check.md (every table) in $OUT (or results/device_check/ when OUT is unset).
#
#   bash benchmarks/device_check.sh            # CUDA when python3 sees a GPU, else the CPU mode
#   DEVICE_CHECK_MODE=cpu bash benchmarks/device_check.sh
#
# CPU mode (no GPU): the same steps at a tiny size (32 px demo images, ResNet-18, k = 2, no torch.compile),
# with ENSEMBLE_FAKE_GPUS=1 so the two jobs still contend for one slot; under 3 minutes on 2 cores (a test
# runs it).
#
# On the device machine (see /work/.library/device/README.md there is no network, and its python3 has its
# own torch, torchvision and timm but no snakemake): the project is imported from this checkout through
# PYTHONPATH, never installed (that would replace the device's torch), the rules' `python` is a link to
# python3, and snakemake comes from wheels prepared here with benchmarks/device_wheels.sh into .whl/
# (ignored by git), which the call carries:
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/results/device_check}
WORK=${DEVICE_CHECK_WORK:-/tmp/ensemble-device-check}
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK/bin"
TABLE=$OUT/device_check.md
started=$(date +%s)
say() { echo "[device_check $(($(date +%s) - started))s] $*" >&2; }

# --- the environment: this checkout on PYTHONPATH, `python` -> python3, snakemake from the carried wheels
PY=$(command -v python3 || command -v python)
ln -sf "$PY" "$WORK/bin/python"
export PATH="$WORK/bin:$PATH" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if ! "$PY" -c "import snakemake" 2>/dev/null; then
    [ -d .whl ] || { echo "no snakemake and no .whl/: run benchmarks/device_wheels.sh here and carry .whl" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$WORK/site" PATH="$PATH:$WORK/site/bin"
fi
MODE=${DEVICE_CHECK_MODE:-$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}

# --- 1. smoke test (fails fast): imports, one training step of the project's model on the device, a dry run
say "smoke test ($MODE)"
timeout 120 "$PY" - "$MODE" <<'PY'
import sys, time
import torch, timm, torchvision, snakemake
from ensemble.models import build_model
from ensemble.device import resolve_precision
device = torch.device(sys.argv[1])
model = build_model("resnet18", n_classes=10, hidden=[]).to(device, memory_format=torch.channels_last)
dtype = resolve_precision("auto", device)
x = torch.randint(0, 255, (8, 3, 64, 64), dtype=torch.uint8, device=device)
t = time.perf_counter()
with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
    loss = model(x).float().logsumexp(1).mean()
loss.backward()
name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
print(f"smoke: {name}, torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
      f"snakemake {snakemake.__version__}, precision {dtype}, one step {time.perf_counter() - t:.2f} s")
PY

# --- 2. the real DAG: k = 4 folds, two GPU jobs at a time on the one GPU: the second waits on the slot lock
if [ "$MODE" = cuda ]; then
    DEMO="{classes: 10, train: 2000, test: 200, size: 256}"
    MODEL="{backbone: resnet50, image_size: 224, head_epochs: 0, epochs: 2, batch_size: 128}"
    DEVICE=cuda CORES=16 K=4
else
    DEMO="{classes: 3, train: 48, test: 12, size: 32}"
    MODEL="{backbone: resnet18, image_size: 32, head_epochs: 0, epochs: 1, batch_size: 8}"
    DEVICE=auto CORES=2 K=2
    export ENSEMBLE_FAKE_GPUS=1  # one pretend GPU: the slot lock is the real code
fi
export ENSEMBLE_GPU_LOCK_DIR=$WORK/locks
cat > "$WORK/config.yaml" <<YAML
run: device-check
data: {dir: data/demo, answers: auto}
demo: $DEMO
folds: {k: $K}
models: {r: $MODEL}
train: {device: $DEVICE}
YAML
say "DAG: snakemake --cores $CORES --resources gpu=2"
set +e
snakemake -s "$REPO/Snakefile" -d "$WORK" --cores "$CORES" --resources gpu=2 > "$WORK/snakemake.log" 2>&1
dag_rc=$?
set -e
tail -5 "$WORK/snakemake.log" >&2
dag_ok=0
"$PY" - "$WORK" "$MODE" "$dag_rc" "$TABLE" "$K" <<'PY' || dag_ok=$?
import json, pathlib, sys
work, mode, rc, table = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
k_folds = int(sys.argv[5])
res = work / "results/device-check"
rows, problems = [], [] if rc == 0 else [f"snakemake exited with {rc}: see snakemake.log"]
for k in range(k_folds):
    metrics = res / f"train/r/fold{k}/metrics.json"
    if not metrics.exists():
        problems.append(f"fold {k}: no metrics.json")
        continue
    m = json.loads(metrics.read_text())
    log = (work / f"logs/device-check/train/r/fold{k}.log").read_text()
    waited = "busy; waiting" in log or "are busy" in log
    want = "cuda" if mode == "cuda" else "cpu"
    if not m["device"].startswith(want) or m["gpu_slot"] != "0":
        problems.append(f"fold {k}: ran on {m['device']} with slot {m['gpu_slot']}, expected {want} with slot 0")
    if mode == "cuda" and m.get("augment_on") != "device":
        problems.append(f"fold {k}: augmentation ran in the {m.get('augment_on')}, not on the device")
    rows.append(f"| {k} | {m['device']} | {m['gpu_slot']} | {m['precision']} | {m.get('augment_on')} | "
                f"{m.get('compiled')} | {m['seconds']:.1f} | {m['val_log_loss']:.3f} | {'yes' if waited else 'no'} |")
if not any("| yes |" in r for r in rows):
    problems.append("no training job waited for the slot lock: the second GPU job should have")
score = res / "score/scores.json"
sub = json.loads(score.read_text())["submission"]["log_loss"] if score.exists() else None
text = (f"### The DAG on {mode}: k = {k_folds}, --resources gpu=2 on one GPU\n\n"
        "| fold | device | GPU slot | precision | augmentation | compiled | seconds | val log loss | waited for the "
        "slot |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Submission test log loss: {sub if sub is None else round(sub, 4)}. "
        + ("All checks passed." if not problems else "PROBLEMS: " + "; ".join(problems)) + "\n\n")
table.write_text(text)
print(text)
sys.exit(1 if problems else 0)
PY

# --- 3. training throughput with the real loader, with and without torch.compile
say "benchmarks/gpu.py"
if [ "$MODE" = cuda ]; then
    GPU_ARGS=(--seconds 8 --images 1500 --workers 12 --compile both)
else
    GPU_ARGS=(--device cpu --backbones resnet18 --size 64 --batch 16 --images 120 --workers 0 --seconds 2 --compile off)
fi
"$PY" benchmarks/gpu.py "${GPU_ARGS[@]}" --out "$WORK/gpu.md"
cat "$WORK/gpu.md" >> "$TABLE"

# --- what comes back: one tar of logs, metrics and benchmark files, one table file
tar -czf "$OUT/device_check.tar.gz" -C "$WORK" snakemake.log config.yaml logs \
    $(cd "$WORK" && find results -name '*.json' -o -name '*.tsv' -o -name '*.csv' | grep -v '/cache/' | sort)
say "done: $TABLE and $OUT/device_check.tar.gz"
cat "$TABLE"
exit $dag_ok
