"""Eager calls vs jitted calls: what a notebook user who never writes ``jax.jit`` pays.

The README's first examples on the bundled example CT (``fluorojax.load_example()``), C-arm LAO
10 / CRA 5, 1020 mm source-to-detector distance, ``--size`` pixels: each call is timed as a user
makes it (the public function called directly, eagerly) and wrapped in ``jax.jit``. Both are
called once first (the eager call may compile then, never again); reported are the first-call
seconds, the median of ``--repeats`` later calls, timed round-robin so machine load hits both,
and the ratio eager / jitted (target: at most 1.5). Writes benchmarks/results/eager.md.

    python benchmarks/bench_eager.py [--size 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fluorojax as fj
from fluorojax import augment, physics

RESULTS = Path(__file__).resolve().parent / "results" / "eager.md"


def calls(size: int):
    """(name, eager zero-argument call, the same call jitted) for each README example; arrays are
    arguments of both (a jitted closure over them would fold them into constants)."""
    ct = fj.load_example()
    mu = fj.hu_to_mu(ct)
    camera = fj.Camera(height=size, width=size, pixel_size=300.0 / size, sdd=1020.0)
    pose = fj.carm_pose(lao_deg=10.0, cra_deg=5.0, source_to_isocenter=510.0, isocenter=ct.center)
    spec = physics.spectrum(90)
    kwire = fj.tools.kwire(diameter=2.0, length=150.0).mesh.transform(fj.transforms.make_pose(jnp.eye(3), ct.center))
    target = fj.render(mu, camera, pose)
    label_ids = tuple(int(i) for i in np.unique(np.asarray(ct.labels)) if i != 0)
    pipeline = augment.default_pipeline((size, size))
    image = jnp.exp(-target)
    masks = jnp.zeros((4, size, size), bool)

    def loss(w):
        return jnp.mean((fj.render(mu, camera, pose @ fj.transforms.se3_exp(w)) - target) ** 2)

    def loss_trilinear(w):
        return jnp.mean((fj.render(mu, camera, pose @ fj.transforms.se3_exp(w), "trilinear") - target) ** 2)

    cases = [
        ("render (siddon)", lambda m, p: fj.render(m, camera, p), (mu, pose)),
        ("render (trilinear)", lambda m, p: fj.render(m, camera, p, "trilinear"), (mu, pose)),
        ("render_labels", lambda v, p: fj.render_labels(v, camera, p, label_ids), (ct, pose)),
        ("render_polychromatic", lambda v, p: fj.render_polychromatic(v, camera, p, spec), (ct, pose)),
        ("render_mesh (K-wire)", lambda m, p: fj.render_mesh(m, camera, p, max_hits=8), (kwire, pose)),
        ("pose gradient (siddon)", jax.grad(loss), (jnp.zeros(6),)),
        ("pose gradient (trilinear)", jax.grad(loss_trilinear), (jnp.zeros(6),)),
        ("default_pipeline", lambda k, i, m: pipeline(k, i, m), (jax.random.key(0), image, masks)),
    ]
    out = []
    for name, fn, args in cases:
        jitted = jax.jit(fn)
        out.append((name, lambda fn=fn, args=args: fn(*args), lambda jitted=jitted, args=args: jitted(*args)))
    return out


def timed(call) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows = []
    for name, eager, jitted in calls(args.size):
        first_eager, first_jit = timed(eager), timed(jitted)
        t_eager, t_jit = [], []
        for _ in range(args.repeats):
            t_eager.append(timed(eager))
            t_jit.append(timed(jitted))
        e, j = statistics.median(t_eager), statistics.median(t_jit)
        rows.append(f"| {name} | {first_eager:.2f} | {e * 1e3:.1f} | {first_jit:.2f} | {j * 1e3:.1f} | {e / j:.2f} |")
        print(rows[-1], flush=True)

    lines = [
        f"## Eager vs jitted ({args.size} x {args.size}, bundled example CT)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{jax.default_backend()}; median of {args.repeats} calls after the first, eager and jitted round-robin.",
        "",
        "| call | eager first call (s) | eager (ms) | jitted first call (s) | jitted (ms) | eager / jitted |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
