#!/usr/bin/env bash
# Train the reference svhn XNOR network; all flags go to train/svhn_train.py (see --help).
# The epoch reports are also appended to logs/svhn_train.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$( [ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || echo python3)}"
mkdir -p "$root/logs"
"$python" "$root/train/svhn_train.py" "$@" | tee -a "$root/logs/svhn_train.log"
