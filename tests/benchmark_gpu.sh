#!/usr/bin/env bash
# Issue #26's GPU checks in one run, Keras on JAX (the lent H200 has no TensorFlow): the fixed VGG-19 head on
# features of scale 1, 10 and 30; the phases of EfficientNet-B3's train_model epochs against the model-only
# path at 1,344 and 7,462 training images, float32 and mixed; the resume checkpoint of one epoch against Keras's
# BackupAndRestore; the paper config's EfficientNet-B3 run through train_model, timed end to end. Each section's output goes to $OUT as it is measured, so a run stopped at
# its time limit still returns what it measured. Results: docs/benchmarks/.
#
#   OUT=/tmp/gpu bash tests/benchmark_gpu.sh
#   PYTHON=.venv/bin/python SIZE=64 SMALL=256:64 LARGE=512:128 RUN_EPOCHS=2 OUT=/tmp/gpu bash tests/benchmark_gpu.sh
#                                                                                    (a try on a CPU first)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
SIZE=${SIZE:-224}
SMALL=${SMALL:-1344:192}
LARGE=${LARGE:-7462:1599}
EPOCHS=${EPOCHS:-3}
RUN_EPOCHS=${RUN_EPOCHS:-10}
PRECISIONS=${PRECISIONS:-float32 mixed}
# A subset of the sections below, by name (default: all, in this order).
SECTIONS=${SECTIONS:-vgg19_head phases_small checkpoint paper_run phases_large determinism}
mkdir -p "$OUT"
# The package and the tests' modules, before whatever the caller has on PYTHONPATH (carried wheels, say).
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="scripts:tests${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
# The model-only and workflow contenders compile the same steps: a persistent cache compiles each once per run
# (the first epoch of a later contender then shows a cache hit, not a compilation).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax-compilation-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

section() {
    local name=$1
    shift
    [[ " $SECTIONS " == *" $name "* ]] || return 0
    echo "== $name: $*" | tee "$OUT/$name.txt"
    local started=$SECONDS
    "$@" 2>&1 | grep --line-buffered -v -e '^WARNING: All log messages' -e '^I0000' | tee -a "$OUT/$name.txt"
    echo "== $name: $((SECONDS - started)) s" | tee -a "$OUT/$name.txt"
}

{
    date -u
    git log -1 --format='commit %H %s' 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import sys, jax, keras, numpy; print('python', sys.version.split()[0], 'jax', jax.__version__, 'keras', keras.__version__, 'numpy', numpy.__version__); print(jax.devices())"
} 2>&1 | tee "$OUT/machine.txt"

section vgg19_head "$PYTHON" - <<'PY'
import json, subprocess, sys

sys.path.insert(0, "tests/model")
from test_backend_equivalence import SCALES, VGG_HEAD_AT_SCALES
import numpy as np

run = subprocess.run([sys.executable, "-c", VGG_HEAD_AT_SCALES, *map(str, SCALES)], capture_output=True, text=True)
if run.returncode:
    sys.exit(run.stderr[-3000:])
answer = json.loads(run.stdout.splitlines()[-1])
print("VGG-19 head (build_head_model, adamax 0.001, 10 epochs) under", answer["backend"])
for scale in SCALES:
    trained = answer[str(scale)]
    p_all, is_all = np.asarray(trained["p_all"]), np.asarray(trained["is_all"], bool)
    print(
        f"  scale {scale:4}: loss {trained['losses'][0]:.4f} -> {trained['losses'][-1]:.4f}, "
        f"NaN {int(np.isnan(p_all).sum())}, p_all {np.nanmin(p_all):.4f}..{np.nanmax(p_all):.4f}, "
        f"ALL >= 0.5 {np.mean(p_all[is_all] >= 0.5):.3f}, HEM < 0.5 {np.mean(p_all[~is_all] < 0.5):.3f}"
    )
PY
section phases_small "$PYTHON" tests/benchmark.py phases --sizes "$SMALL" --size "$SIZE" --epochs "$EPOCHS" --precision $PRECISIONS --out "$OUT"
section checkpoint "$PYTHON" tests/benchmark.py checkpoint --size "$SIZE"
section paper_run "$PYTHON" tests/benchmark.py paper-run --size "$SIZE" --epochs "$RUN_EPOCHS" \
    --train-images "${LARGE%%:*}" --val-images "${LARGE##*:}" --out "$OUT"
section phases_large "$PYTHON" tests/benchmark.py phases --sizes "$LARGE" --size "$SIZE" --epochs "$EPOCHS" --precision $PRECISIONS --out "$OUT"

# deterministic: true under JAX on the GPU: two train_model runs (each its own process, as Slurm jobs are) with the
# flag must give bit-identical weights; two without it show whether the GPU's kernels vary at all here.
section determinism "$PYTHON" - "$SIZE" <<'PY'
import subprocess, sys, tempfile
from pathlib import Path

from benchmark import write_rendered_dataset

RUN = """
import hashlib, sys
from pathlib import Path
from benchmark import PAPER_AUGMENTATION, paper_options
from leukemia_dtl.model.training import train_model
from leukemia_dtl.model.classifiers import load_model
data, out, size, deterministic = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "true"
train_model(model_name="efficientnetb3", model_options=paper_options("efficientnetb3", 32, 2),
            augmentation=PAPER_AUGMENTATION, image_size=size, seed=0, split_path=data / "split.tsv", cache_dir=data,
            backup_dir=out / "resume", model_path=out / "model.keras", history_path=out / "history.tsv",
            stats_path=out / "stats.json", deterministic=deterministic)
digest = hashlib.sha256(b"".join(w.tobytes() for w in load_model(out / "model.keras").get_weights()))
print(digest.hexdigest()[:16])
"""
size = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    data = Path(tmp) / "data"
    data.mkdir()
    write_rendered_dataset(data, 512, 128, size, 8)
    for deterministic in ("true", "false"):
        digests = []
        for run in range(2):
            out = Path(tmp) / f"{deterministic}{run}"
            arguments = [sys.executable, "-c", RUN, str(data), str(out), str(size), deterministic]
            done = subprocess.run(arguments, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            digests.append(done.stdout.split()[-1])
        print(f"deterministic {deterministic}: weights digests {digests}, identical: {digests[0] == digests[1]}", flush=True)
PY
