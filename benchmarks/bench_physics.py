"""Polychromatic vs monochromatic DRR cost (issue 3, item 7).

A 256 x 256 DRR of the bundled example CT (``fluorojax.load_example()``), AP view, 1020 mm
source-to-detector distance, 1.2 mm pixels:
  mono: ``render(hu_to_mu(ct))`` (one channel, mu at 60 keV), then ``exp(-line integral)``;
  poly: ``render_polychromatic`` (HU -> 3 density channels air / soft tissue / cortical bone,
        one traversal, then the 90 kVp spectrum over all its 1 keV bins).
Both start from the HU volume inside the jitted function, so the material split is timed too.
Forward: the image. Forward+backward: the value and gradient of a scalar image loss with
respect to the pose (a 4 x 4 matrix) and the HU volume. Median of ``--repeats`` timed runs after
one compile run. Writes benchmarks/results/physics.md.

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

    def mono(pose, hu):
        return jnp.exp(-fj.render(fj.hu_to_mu(ct.replace(data=hu)), camera, pose, method=method))

    def poly(pose, hu):
        return physics.render_polychromatic(ct.replace(data=hu), camera, pose, spec, method=method)

    rows = []
    for name, fn in (("monochromatic (1 channel)", mono), (f"polychromatic ({args.kvp} kVp, {spec[0].size} bins, 3 materials)", poly)):
        forward = jax.jit(fn)
        backward = jax.jit(jax.value_and_grad(lambda p, h, fn=fn: jnp.mean(fn(p, h)), argnums=(0, 1)))
        rows.append((name, timed(forward, pose, ct.data, repeats=args.repeats), timed(backward, pose, ct.data, repeats=args.repeats)))

    device = jax.devices()[0]
    lines = [
        f"## Polychromatic vs monochromatic DRR ({args.size} x {args.size}, {method}, example CT {ct.shape})",
        "",
        f"Device: {device.platform} ({device.device_kind}), jax {jax.__version__}, {platform.processor() or platform.machine()}; "
        f"median of {args.repeats} runs after compilation.",
        "",
        "| DRR | forward (ms) | forward + backward (ms) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {f * 1e3:.1f} | {b * 1e3:.1f} |" for name, f, b in rows]
    lines += [f"| ratio poly / mono | {rows[1][1] / rows[0][1]:.2f}x | {rows[1][2] / rows[0][2]:.2f}x |", ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a" if args.out.exists() else "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
