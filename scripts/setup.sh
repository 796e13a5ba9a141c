#!/usr/bin/env bash
# Idempotent setup: Debian packages (QGIS 3.22, GDAL, rasterio on the system GDAL), then
# .venv from Debian's python3.11 with --system-site-packages, then the pinned pip requirements.
# A second run checks and changes nothing; it takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# A development checkout has requirements-dev.txt (tests, lint); the installed plugin folder
# (the zip of scripts/package.py) has only the runtime requirements.
REQS=requirements.txt
if [ -f requirements-dev.txt ]; then REQS=requirements-dev.txt; fi
if [ "${1:-}" = "--print-requirements" ]; then echo "$REQS"; exit 0; fi

APT_PACKAGES=(qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-numpy
              python3-rasterio python3-scipy python3.11-venv)
# The s2cloudless wheel, for its LightGBM model file only (--no-deps: its package imports cv2 and
# sentinelhub, which WaterSeg never imports; lightgbm itself comes from requirements.txt).
S2CLOUDLESS=s2cloudless==1.7.3
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=/usr/bin/python3.11
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import sys; sys.exit(0 if sys.base_prefix == '/usr' else 1)"; then
  echo "setup: creating .venv from $PY (--system-site-packages)"
  rm -rf .venv
  $PY -m venv --system-site-packages .venv
fi

stamp=.venv/.requirements.sha256
want=$( (cat "$REQS" requirements.txt constraints.txt; echo "$S2CLOUDLESS") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python requirements ($REQS) into .venv"
  # TORCH_INDEX_URL lets a CUDA user pick PyTorch's CUDA wheels, e.g.
  #   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
  extra=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then extra=(--extra-index-url "$TORCH_INDEX_URL"); fi
  .venv/bin/python -m pip install -q --disable-pip-version-check "${extra[@]}" \
      -c constraints.txt -r "$REQS"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "$S2CLOUDLESS"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import torch, rasterio, numpy, shapely; from osgeo import gdal_array; import qgis.core" \
  || { echo "setup: the venv cannot import its dependencies; delete .venv and run 'make setup' again" >&2; exit 1; }
echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
