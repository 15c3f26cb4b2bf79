#!/usr/bin/env bash
# Sets up the environment (install.sh) and runs the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash run_tests.sh tests/evaluation -x`.
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
PY=$(bash install.sh --print-python)
exec "$PY" -m pytest tests "$@"
