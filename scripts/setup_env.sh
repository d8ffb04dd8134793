#!/usr/bin/env bash
# Create or reuse .venv with the pinned environment. Sourced by run_all.sh and run_tests.sh.
# Reinstalls only when requirements.txt or pyproject.toml changed (hash kept in .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FAIRL_VENV:-$ROOT/.venv}"
# Python 3.11 to 3.13 (every pinned compiled package has wheels for them); 3.11 is the one the committed
# results come from (run.json records the version). PYTHON picks the interpreter; else the first found.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
if ! "$PY" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
  echo "error: fairl needs Python 3.11, 3.12 or 3.13 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
have="$(cat "$VENV/.fairl-env" 2>/dev/null || true)"
pip_quiet() {  # quiet on success; the full log (minus this machine's find-links noise) on failure
  if ! "$VENV/bin/python" -m pip "$@" > "$VENV/pip.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$VENV/pip.log" >&2
    echo "error: pip $* failed (log: $VENV/pip.log)" >&2
    return 1
  fi
}
if [ "$want" != "$have" ]; then
  echo "[setup] installing pinned dependencies (requirements.txt; torch==2.13.0 CPU) ..."
  pip_quiet install --quiet --upgrade pip
  # torch first and alone, exactly pinned, so nothing can pull a newer build. The CPU build from PyTorch's
  # own index where it can be reached (the PyPI wheel of torch for Linux is a CUDA build of several GB);
  # else the pin as pip finds it (on a machine that keeps a local CPU wheel, that one).
  if ! "$VENV/bin/python" -m pip install --quiet --timeout 15 --retries 1 "torch==2.13.0" \
      --index-url "${FAIRL_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" > "$VENV/pip-torch.log" 2>&1; then
    echo "[setup] PyTorch's CPU index not reachable (log: $VENV/pip-torch.log); installing torch==2.13.0 as pip finds it"
    pip_quiet install --quiet "torch==2.13.0"
  fi
  pip_quiet install --quiet -r "$ROOT/requirements.txt"
  pip_quiet install --quiet --no-deps -e "$ROOT"
  echo "$want" > "$VENV/.fairl-env"
  echo "[setup] environment ready"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
# Real data mirror: default to ../shared/fairl-data beside the checkout when it exists.
if [ -z "${FAIRL_DATA_MIRROR:-}" ] && [ -d "$ROOT/../shared/fairl-data" ]; then
  export FAIRL_DATA_MIRROR="$(cd "$ROOT/../shared/fairl-data" && pwd)"
fi
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# OMP_WAIT_POLICY is left as you set it. OpenMP's default (spin briefly, then sleep) is the fast
# one on an idle machine; measured on 2 idle cores (benchmarks/README.md), PASSIVE was slower:
# generation 68 vs 93 new tokens/s, the IRL grid 107 s vs 54 s. On a machine whose cores other jobs
# share, set OMP_WAIT_POLICY=PASSIVE: spinning threads starved each other there (generation 2.6
# tokens/s with the default policy vs 27 with PASSIVE at load 15). Worker processes have one thread
# each, so the policy does not matter for them.
