#!/usr/bin/env bash
# ./run_all.sh [PROFILE] [--from NN] [--only NN] [--seed S] [--force]
# Sets up the pinned environment, then runs every numbered notebook in order with papermill
# (default profile: cpu) and regenerates every figure and table under results/<PROFILE>/.
# Each notebook's output and progress lines show as it runs (prefixed [NN]; a status line at least
# every 30 s); the run ends by building its static site, results/<PROFILE>/site/index.html.
# ./run_all.sh --site PROFILE rebuilds that site from the last run without running anything.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
exec python -m fairl_lib.pipeline "$@"
