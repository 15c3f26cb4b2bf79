#!/usr/bin/env bash
# Sets up the Python environment for this repository and prints nothing else on success but progress.
#
# Which environment: the active one if a virtualenv or conda env is active (VIRTUAL_ENV / CONDA_PREFIX),
# otherwise ./.venv, created here. Inside it:
#   1. torch + torchvision, unless torch already imports (CPU or CUDA build, yours is kept);
#   2. detectron2, unless it already imports (tools/install_detectron2.py; yours is kept);
#   3. vis_core itself, editable, with its dependencies (setup.py), building vis_core._C where a CUDA
#      toolkit is found (set VIS_CORE_NO_CUDA_OPS=1 to skip; the install never fails because of it).
# Afterwards `$(bash install.sh --print-python)` names the interpreter to use.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
elif [[ -n "${CONDA_PREFIX:-}" ]]; then
  PY="$CONDA_PREFIX/bin/python"
else
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  PY="$PWD/.venv/bin/python"
fi
if [[ "${1:-}" == "--print-python" ]]; then echo "$PY"; exit 0; fi

log() { echo "[install.sh] $*" >&2; }
quiet_pip() { "$PY" -m pip "$@" 2>&1 | grep -v -E "^WARNING: Location|^\s*$" | grep -v "already satisfied" >&2 || true; }

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  log "installing torch==2.14.1 torchvision==0.29.1 (about a minute from this machine's disk)"
  quiet_pip install -q torch==2.14.1 torchvision==0.29.1
fi
"$PY" tools/install_detectron2.py >&2
# the stamp covers setup.py and the list of project packages (a new project must be installed too)
stamp=".vis_core_installed.$( (cat setup.py; ls projects/*/*/__init__.py) | sha1sum | cut -c1-12)"
if [[ ! -f "$("$PY" -c 'import sys; print(sys.prefix)')/$stamp" ]] || ! "$PY" -c "import vis_core" 2>/dev/null; then
  log "installing vis_core (editable) and its dependencies"
  quiet_pip install -q --no-build-isolation -e ".[dev]"
  touch "$("$PY" -c 'import sys; print(sys.prefix)')/$stamp"
fi
"$PY" -c "import torch, detectron2, vis_core; print(f'[install.sh] ready: torch {torch.__version__}, detectron2 {detectron2.__version__}, vis_core at {vis_core.__path__[0]}')" >&2
