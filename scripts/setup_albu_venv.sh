#!/usr/bin/env bash
# Build the virtual environment in which benchmarks/bench_augment.py runs FluoroSeg's own
# training augmentation (``build_augmentation`` from its public repository, checked out
# separately and passed to the benchmark with --fluoroseg): albumentations 2.0.4 with
# scikit-learn (the loader's k-means window), opencv and pillow (imported by the loader). Kept out of fluorojax's environment:
# albumentations pins its own dependencies.
#
# Usage: bash scripts/setup_albu_venv.sh [VENV_DIR]   (default: .venv-albu at the repo root)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv-albu}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet albumentations==2.0.4 scikit-learn numpy pillow

"$venv/bin/python" - <<'PY'
import importlib.metadata as md

import albumentations  # noqa: F401
import cv2  # noqa: F401
import sklearn  # noqa: F401

print("albumentations venv ready:", ", ".join(
    f"{name} {md.version(name)}" for name in ("albumentations", "albucore", "scikit-learn", "numpy")))
PY
