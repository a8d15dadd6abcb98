#!/usr/bin/env bash
# Train the reference cifar10 XNOR network; all flags go to train/cifar10_train.py (see --help).
# The epoch reports are also appended to logs/cifar10_train.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$( [ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || echo python3)}"
mkdir -p "$root/logs"
"$python" "$root/train/cifar10_train.py" "$@" | tee -a "$root/logs/cifar10_train.log"
