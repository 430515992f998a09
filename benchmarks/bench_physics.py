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

Forward: the image. Forward+backward: the value and gradient of the mean of the image. Median of
``--repeats`` timed runs after one compile run. Appends a section to benchmarks/results/physics.md.

    python benchmarks/bench_physics.py [--repeats 5] [--method siddon] [--size 256]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import fluorojax as fj
from fluorojax import physics

RESULTS = Path(__file__).resolve().parent / "results" / "physics.md"


def timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", default="siddon", choices=("siddon", "trilinear"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kvp", type=int, default=90)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    ct = fj.load_example()
    camera = fj.Camera(args.size, args.size, 300.0 / args.size, 1020.0)
    pose = fj.carm_pose(0.0, 0.0, 600.0, ct.center)
    spec = physics.spectrum(args.kvp)
    method = args.method

    mu = fj.hu_to_mu(ct)
    materials = physics.material_volume(ct)

    def mono_prepared(pose, mu_data):
        return jnp.exp(-fj.render(mu.replace(data=mu_data), camera, pose, method=method))

    def poly_prepared(pose, densities):
        return physics.render_polychromatic(materials.replace(data=densities), camera, pose, spec, method=method)

    def mono_hu(pose, hu):
        return jnp.exp(-fj.render(fj.hu_to_mu(ct.replace(data=hu)), camera, pose, method=method))

    def poly_hu(pose, hu):
        return physics.render_polychromatic(ct.replace(data=hu), camera, pose, spec, method=method)

    poly_name = f"polychromatic ({args.kvp} kVp, {spec[0].size} bins, 3 materials)"
    rows = []
    settings = (("prepared volume", 0, ((mono_prepared, mu.data), (poly_prepared, materials.data))),
                ("from HU", (0, 1), ((mono_hu, ct.data), (poly_hu, ct.data))))
    for setting, argnums, cases in settings:
        for name, (fn, data) in zip(("monochromatic (1 channel)", poly_name), cases):
            forward = jax.jit(fn)
            backward = jax.jit(jax.value_and_grad(lambda p, d, fn=fn: jnp.mean(fn(p, d)), argnums=argnums))
            rows.append((setting, name, timed(forward, pose, data, repeats=args.repeats),
                         timed(backward, pose, data, repeats=args.repeats)))

    device = jax.devices()[0]
    lines = [
        f"## Polychromatic vs monochromatic DRR ({args.size} x {args.size}, {method}, example CT {ct.shape})",
        "",
        f"Device: {device.platform} ({device.device_kind}), jax {jax.__version__}, {platform.processor() or platform.machine()}; "
        f"median of {args.repeats} runs after compilation.",
        "",
        "| setting | DRR | forward (ms) | forward + backward (ms) |",
        "|---|---|---|---|",
    ]
    for i in (0, 2):
        (setting, mono_name, mf, mb), (_, poly_name_, pf, pb) = rows[i], rows[i + 1]
        lines += [f"| {setting} | {mono_name} | {mf * 1e3:.1f} | {mb * 1e3:.1f} |",
                  f"| {setting} | {poly_name_} | {pf * 1e3:.1f} | {pb * 1e3:.1f} |",
                  f"| {setting} | ratio poly / mono | {pf / mf:.2f}x | {pb / mb:.2f}x |"]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a" if args.out.exists() else "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
