#!/usr/bin/env bash
# ./run_all.sh [PROFILE] [--from NN] [--only NN] [--seed S] [--force]
# Sets up the pinned environment, then runs every numbered notebook in order with papermill
# (default profile: cpu) and regenerates every figure and table under results/<PROFILE>/.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
exec python -m fairl_lib.pipeline "$@"
