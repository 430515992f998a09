#!/usr/bin/env bash
# Build the peers' virtual environment for benchmarks/peers_drr.py: PyTorch (CPU build),
# DiffDRR 0.6.1, nanodrr 0.1.7, nibabel, numpy and numba. Torch lives only here, never in
# fluorojax's dependencies.
#
# Usage: bash scripts/setup_peers_venv.sh [VENV_DIR]   (default: .venv-peers at the repo root)
#
# torch is pinned to 2.13.0 in the same pip call as the peers: on the project's machines pip
# takes that CPU wheel from local disk, while an unpinned torch (asked for by diffdrr or
# nanodrr) would pull a multi-GB CUDA build. diffdrr also pulls torchvision from PyPI, which
# fails to import beside this torch ("operator torchvision::nms does not exist"); the renderers
# used here (diffdrr.drr, diffdrr.data, nanodrr) never import it, and the check below proves it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv-peers}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet \
    torch==2.13.0 diffdrr==0.6.1 nanodrr==0.1.7 nibabel numpy numba

"$venv/bin/python" - <<'EOF'
import importlib.metadata as md

import diffdrr.drr  # noqa: F401
import nanodrr.drr  # noqa: F401
import numba  # noqa: F401
import torch

assert torch.__version__.startswith("2.13.0"), torch.__version__
print("peers venv ready:", ", ".join(f"{name} {md.version(name)}" for name in
                                     ("torch", "diffdrr", "nanodrr", "torchio", "numpy", "numba", "nibabel")))
EOF
