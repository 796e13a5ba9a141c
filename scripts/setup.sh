#!/usr/bin/env bash
# Idempotent setup: Debian packages (QGIS 3.22, GDAL, rasterio on the system GDAL), then
# .venv from Debian's python3.11 with --system-site-packages, then the pinned pip requirements.
# A second run checks and changes nothing; it takes seconds.
#
#   bash scripts/setup.sh                       the plugin folder's .venv (a development
#                                               checkout adds requirements-dev.txt); sudo for apt
#   bash scripts/setup.sh --print-requirements  the requirements file that would be installed
#   bash scripts/setup.sh --venv DIR --runtime [--deps DIR] [--python PY]
#       an environment at DIR with the runtime requirements only, as the dock's Install
#       backend makes it (plugin/install.py). It never prompts: missing Debian packages stop it
#       with the apt-get command to run. --deps: the folder of requirements.txt,
#       constraints.txt and requirements-nodeps.txt (default: this folder); --python: the
#       interpreter the venv is made from (default /usr/bin/python3.11, which hosts Debian's
#       GDAL and rasterio). Lines "setup: error: ..." say what failed and how to fix it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
TARGET=0  # 1: --venv given (the plugin's installer runs it: no sudo, no prompt)
RUNTIME=0
DEPS=.
PY=/usr/bin/python3.11
PRINT_REQS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --print-requirements) PRINT_REQS=1 ;;
    --venv) VENV="${2:?--venv needs a folder}"; TARGET=1; shift ;;
    --runtime) RUNTIME=1 ;;
    --deps) DEPS="${2:?--deps needs a folder}"; shift ;;
    --python) PY="${2:?--python needs an interpreter}"; shift ;;
    *) echo "setup: error: unknown option $1 (see the header of scripts/setup.sh)" >&2; exit 2 ;;
  esac
  shift
done
fail() { echo "setup: error: $*" >&2; exit 1; }

# A development checkout has requirements-dev.txt (tests, lint); the installed plugin folder
# (the zip of scripts/package.py) has only the runtime requirements.
REQS=requirements.txt
if [ "$RUNTIME" = 0 ] && [ -f "$DEPS/requirements-dev.txt" ]; then REQS=requirements-dev.txt; fi
if [ "$PRINT_REQS" = 1 ]; then echo "$REQS"; exit 0; fi

# python3-matplotlib: the plots of 'change' (QGIS pulls it in too; Debian's build matches
# Debian's numpy, which a pip matplotlib would not be pinned to)
APT_PACKAGES=(qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-numpy
              python3-rasterio python3-scipy python3-matplotlib python3.11-venv)

if [ "$TARGET" = 1 ] && ! command -v dpkg-query >/dev/null; then
  echo "setup: not Debian (no dpkg-query): skipping the Debian packages; $PY must provide GDAL, numpy and rasterio"
else
  if [ "$TARGET" = 1 ]; then echo "setup: checking Debian packages"; fi
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      if [ "$TARGET" = 1 ]; then
        fail "Debian packages missing: run 'sudo apt-get install ${missing[*]}' in a terminal, then install the backend again"
      fi
      SUDO="sudo"
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

[ -x "$PY" ] || fail "$PY not found: install Debian's python3.11 ('sudo apt-get install python3.11-venv python3-gdal python3-rasterio') or pass --python"
VPY="$VENV/bin/python"
if [ ! -x "$VPY" ] || { [ "$TARGET" = 0 ] && ! "$VPY" -c "import sys; sys.exit(0 if sys.base_prefix == '/usr' else 1)"; }; then
  echo "setup: creating $VENV from $PY (--system-site-packages)"
  if [ "$TARGET" = 0 ]; then rm -rf "$VENV"; fi
  "$PY" -m venv --system-site-packages "$VENV" \
    || fail "$PY cannot create a virtual environment (no venv/ensurepip): run 'sudo apt-get install python3.11-venv', then try again"
fi

stamp="$VENV/.requirements.sha256"
want=$("$PY" plugin/backend_home.py hash --deps "$DEPS" --reqs "$REQS")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python requirements ($REQS) into $VENV"
  # TORCH_INDEX_URL lets a CUDA user pick PyTorch's CUDA wheels, e.g.
  #   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
  extra=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then extra=(--extra-index-url "$TORCH_INDEX_URL"); fi
  pip=("$VPY" -m pip install --disable-pip-version-check)
  if [ "$TARGET" = 1 ]; then pip+=(--progress-bar off); else pip+=(-q); fi  # a log, or quiet
  "${pip[@]}" "${extra[@]}" -c "$DEPS/constraints.txt" -r "$DEPS/$REQS" \
    || fail "pip could not install $REQS (its message is above)"
  mapfile -t pins < <("$PY" plugin/backend_home.py pins --deps "$DEPS")
  if [ ${#pins[@]} -gt 0 ]; then
    "${pip[@]}" --no-deps "${pins[@]}" || fail "pip could not install ${pins[*]} (its message is above)"
  fi
  echo "$want" > "$stamp"
fi
if [ "$TARGET" = 0 ]; then
  .venv/bin/python -c "import torch, rasterio, numpy, shapely; from osgeo import gdal_array; import qgis.core" \
    || { echo "setup: the venv cannot import its dependencies; delete .venv and run 'make setup' again" >&2; exit 1; }
  echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
  exit 0
fi
modules="numpy, rasterio"
if grep -qE '^torch([=<>~! ;]|$)' "$DEPS/$REQS"; then modules="torch, $modules"; fi
"$VPY" -c "import $modules; from osgeo import gdal_array" \
  || fail "the new environment cannot import $modules or GDAL's numpy bindings (message above)"
echo "setup: ok ($VENV)"
