#!/usr/bin/env bash
# The GPU check (docs/gpu-check.md): benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--work DIR]
# Runs benchmarks/gpu_check.py with the repository's .venv when it works, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -x .venv/bin/python ]] && .venv/bin/python -c "" 2>/dev/null; then
  py=.venv/bin/python
else
  [[ -e .venv/bin/python || -L .venv/bin/python ]] && echo "gpu_check: .venv/bin/python does not run; using python3" >&2
  py="$(command -v python3)"
fi
exec "$py" -m benchmarks.gpu_check "$@"
