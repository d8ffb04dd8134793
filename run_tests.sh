#!/usr/bin/env bash
# ./run_tests.sh [pytest args]
# Sets up the same environment as run_all.sh and runs the whole test suite, including the whole
# pipeline on the smoke profile (tests marked `pipeline`). Skip the slow part with: -m "not pipeline".
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python -m fairl_lib assets fetch --profile smoke
exec python -m pytest "$@"
