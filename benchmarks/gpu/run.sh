#!/usr/bin/env bash
# The one command of the GPU benchmark on the device machine (benchmarks/README.md, "GPU"):
# install the carried wheels offline, import fluorojax from this tree (pure Python: the
# repository root goes on PYTHONPATH, nothing to build), run bench_gpu.py (it stops starting new steps after --time-limit, 420 s by default), and put
# gpu.md, gpu.json and bench.log into $OUT, the folder that comes back from the device (or
# benchmarks/results/ when OUT is unset).
#
# Usage, from the repository root: bash benchmarks/gpu/run.sh [bench_gpu.py options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${OUT:-$root/benchmarks/results}"
site=/tmp/fluorojax-gpu-site
mkdir -p "$out"

if ! ls "$here"/wheelhouse/*.whl >/dev/null 2>&1; then
    echo "no wheels in $here/wheelhouse: run benchmarks/gpu/fetch_wheels.sh here and carry benchmarks/gpu/wheelhouse" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$here"/wheelhouse/*.whl
export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the peers' torch process shares the GPU
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
set -o pipefail
timeout 480 python3 "$here/bench_gpu.py" --out "$out/gpu.md" --json "$out/gpu.json" "$@" 2>&1 | tee "$out/bench.log"
