#!/usr/bin/env bash
# Sets up the environment (install.sh) and runs the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash run_tests.sh tests/evaluation -x`.
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
PY=$(bash install.sh --print-python)
# The optional HOTA backend, so that its tests run too (--no-deps: see vis_core/evaluation/hota.py).
"$PY" -c "import trackeval" 2>/dev/null || "$PY" -m pip install -q --no-deps "trackeval==1.0.0"
exec "$PY" -m pytest tests "$@"
