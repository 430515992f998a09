"""Polychromatic vs monochromatic DRR cost (issue 3, item 7).

A 256 x 256 DRR of the bundled example CT (``fluorojax.load_example()``), AP view, 1020 mm
source-to-detector distance, 1.2 mm pixels, in two settings:

* prepared volume (the registration case): the mu volume (``hu_to_mu``, 60 keV) and the
  3-channel material volume (``material_volume``: air / soft tissue / cortical bone densities)
  are computed once; timed are mono ``exp(-render(mu))`` and poly ``render_polychromatic`` of
  the material volume with the full 90 kVp spectrum (1 keV bins); the gradient is taken with
  respect to the pose (4 x 4 matrix);
* from HU: both start from the HU volume inside the jitted function (conversion and material
  split timed too); the gradient is taken with respect to the pose and the HU volume.

Each setting times mono, poly with the full spectrum and poly with the spectrum merged into
``--bins`` energy bins (``spectrum(kvp, n_bins=...)``). Forward: the image. Forward+backward: the value and gradient of the mean of the image. Best of
``--repeats`` runs after one compile run, all cases timed round-robin. Appends a section to benchmarks/results/physics.md.

    python benchmarks/bench_physics.py [--repeats 5] [--method siddon] [--size 256]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import fluorojax as fj
from fluorojax import physics

RESULTS = Path(__file__).resolve().parent / "results" / "physics.md"


def best_times(calls, repeats):
    """Best-of-``repeats`` seconds of each zero-argument call, timed round-robin so that every
    call sees the same machine load (the minimum is the least disturbed run)."""
    for call in calls:
        jax.block_until_ready(call())  # compile
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, out in zip(calls, times):
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            out.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", default="siddon", choices=("siddon", "trilinear"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kvp", type=int, default=90)
    parser.add_argument("--bins", type=int, default=16, help="energy bins of the rebinned spectrum")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    ct = fj.load_example()
    camera = fj.Camera(args.size, args.size, 300.0 / args.size, 1020.0)
    pose = fj.carm_pose(0.0, 0.0, 600.0, ct.center)
    spec = physics.spectrum(args.kvp)
    binned = physics.spectrum(args.kvp, n_bins=args.bins)
    method = args.method

    mu = fj.hu_to_mu(ct)
    materials = physics.material_volume(ct)

    def mono_prepared(pose, mu_data):
        return jnp.exp(-fj.render(mu.replace(data=mu_data), camera, pose, method=method))

    def poly_prepared(pose, densities, spec=spec):
        return fj.render_polychromatic(materials.replace(data=densities), camera, pose, spec, method=method)

    def poly_prepared_binned(pose, densities):
        return poly_prepared(pose, densities, binned)

    def mono_hu(pose, hu):
        return jnp.exp(-fj.render(fj.hu_to_mu(ct.replace(data=hu)), camera, pose, method=method))

    def poly_hu(pose, hu, spec=spec):
        return fj.render_polychromatic(ct.replace(data=hu), camera, pose, spec, method=method)

    def poly_hu_binned(pose, hu):
        return poly_hu(pose, hu, binned)

    names = (
        "monochromatic (1 channel)",
        f"polychromatic, {spec[0].size} bins (1 keV)",
        f"polychromatic, {args.bins} bins",
    )
    settings = (
        (
            "prepared volume",
            0,
            ((mono_prepared, mu.data), (poly_prepared, materials.data), (poly_prepared_binned, materials.data)),
        ),
        ("from HU", (0, 1), ((mono_hu, ct.data), (poly_hu, ct.data), (poly_hu_binned, ct.data))),
    )
    rows, calls = [], []
    for setting, argnums, cases in settings:
        for name, (fn, data) in zip(names, cases):
            forward = jax.jit(fn)
            backward = jax.jit(jax.value_and_grad(lambda p, d, fn=fn: jnp.mean(fn(p, d)), argnums=argnums))
            rows.append((setting, name))
            calls += [lambda f=forward, d=data: f(pose, d), lambda f=backward, d=data: f(pose, d)]
    times = best_times(calls, args.repeats)
    rows = [row + (times[2 * i], times[2 * i + 1]) for i, row in enumerate(rows)]
    full = physics.neglog(jax.jit(poly_prepared)(pose, materials.data))
    coarse = physics.neglog(jax.jit(poly_prepared_binned)(pose, materials.data))
    bin_error = float(jnp.max(jnp.abs(coarse - full)))

    device = jax.devices()[0]
    lines = [
        f"## Polychromatic vs monochromatic DRR ({args.size} x {args.size}, {method}, example CT {ct.shape})",
        "",
        f"Device: {device.platform} ({device.device_kind}), jax {jax.__version__}, {platform.processor() or platform.machine()}; "
        f"best of {args.repeats} runs after compilation, timed round-robin.",
        "",
        "| setting | DRR | forward (ms) | forward + backward (ms) |",
        "|---|---|---|---|",
    ]
    for i in range(0, len(rows), 3):
        (setting, _, mf, mb) = rows[i]
        for _, name, f, b in rows[i : i + 3]:
            ratio = "" if f == mf else f" ({f / mf:.2f}x / {b / mb:.2f}x)"
            lines.append(f"| {setting} | {name}{ratio} | {f * 1e3:.1f} | {b * 1e3:.1f} |")
    lines += [
        "",
        f"Ratios in brackets: polychromatic / monochromatic, forward / forward + backward. "
        f"{args.bins} energy bins change the -log image by at most {bin_error:.4f} "
        f"(range {float(full.min()):.2f} to {float(full.max()):.2f}).",
    ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a" if args.out.exists() else "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
