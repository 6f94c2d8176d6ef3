#!/usr/bin/env bash
# The GPU check of issue 7, prepared for a session with an NVIDIA GPU (about 4-6 minutes on an
# H100): the speedrun recipe and ResNet-18 on synthetic CIFAR-shaped data (50,000 images) through
# the framework beside a bare loop, then a full speedrun's wall time. Record the output, with the
# card named, in benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -m benchmarks.gpu_throughput --device cuda --num-train 50000 --epochs 4
# The whole recipe as a user runs it (10 epochs; synthetic data, so accuracy is not CIFAR's).
started=$(date +%s.%N)
python -m vision_exp.train experiment=cifar10_speedrun dataset=synthetic \
  dataset.source.num_train=50000 dataset.source.num_test=10000 trainer.progress_bar=false \
  mlflow.log_model=false hydra.run.dir="$work/speedrun" > "$work/speedrun.log" 2>&1 ||
  { tail -20 "$work/speedrun.log"; exit 1; }
python - "$work/speedrun/report/history.csv" "$started" "$(date +%s.%N)" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
train_s = sum(float(row["epoch_time"]) for row in rows)
print(f"speedrun: {len(rows)} epochs, {train_s:.2f} s in training passes, "
      f"{train_s - float(rows[0]['epoch_time']):.2f} s without the first (compiling) epoch; "
      f"{float(sys.argv[3]) - float(sys.argv[2]):.1f} s wall for the whole command")
PY
