"""Mesh rendering benchmark: a ~20k-triangle screw at 512 x 512, hits + travel, fluorojax vs trimesh.

Same rays for every method (the camera's pixel rays). trimesh casts with its pure-NumPy/rtree
intersector and, when ``embreex`` is installed, with Embree; both return every hit
(``multiple_hits=True``), from which depths and travel (exits - entries by the face normal)
are formed. Agreement with fluorojax is reported as the largest travel difference over pixels.
The soft (differentiable-outline) mask is timed too, forward and gradient with respect to the
screw's pose; neither peer has one. For information, the GPU's block schedule (every pixel
against every triangle, ``path="blocks"``) is timed on the CPU at ``--blocks-size`` (it is not
meant for the CPU: it does P x F pair tests where the CPU's pair loop does only those in the
triangles' boxes).

    python benchmarks/bench_mesh.py [--size 512] [--repeats 3] [--blocks-size 64]

Writes benchmarks/results/mesh.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from fluorojax.camera import Camera, look_at
from fluorojax.raycast.mesh_render import render_mesh
from fluorojax.raycast.mesh_soft import render_mesh_soft
from fluorojax.tools import cortical_screw
from fluorojax.transforms import make_pose, so3_exp


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def trimesh_travel(intersector, tm, sources, dirs):
    locations, index_ray, index_tri = intersector.intersects_location(sources, dirs, multiple_hits=True)
    depth = np.einsum("rk,rk->r", locations - sources[index_ray], dirs[index_ray])
    sign = np.where(np.einsum("rk,rk->r", tm.face_normals[index_tri], dirs[index_ray]) > 0, 1.0, -1.0)
    return np.bincount(index_ray, weights=sign * depth, minlength=len(sources))


def difference(ref, travel):
    diff = np.abs(ref - travel)
    return f"max {diff.max():.2e}, {100 * np.mean(diff > 1e-2):.3f}% of rays > 0.01"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--blocks-size", type=int, default=64, help="image size for the block schedule forced on the CPU (0: skip)"
    )
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "mesh.md"))
    args = parser.parse_args()

    screw = cortical_screw(length=40.0, segments=40, rings_per_pitch=8)
    mesh = screw.mesh
    tm = mesh.to_trimesh()
    camera = Camera(args.size, args.size, 0.15 * 512 / args.size, 1000.0)
    pose = look_at((400.0, -500.0, 60.0), (0.0, 0.0, 21.0), up=(0.0, 0.0, 1.0))
    sources, targets = (np.asarray(a, np.float64).reshape(-1, 3) for a in camera.rays(pose))
    dirs = (targets - sources) / np.linalg.norm(targets - sources, axis=1, keepdims=True)

    rows = []
    fn = jax.jit(lambda m, p: render_mesh(m, camera, p, max_hits=8))
    start = time.perf_counter()
    jax.block_until_ready(fn(mesh, pose))
    first = time.perf_counter() - start
    out, t_fj = timed(lambda: jax.block_until_ready(fn(mesh, pose)), args.repeats)
    travel = np.asarray(out.travel, np.float64).reshape(-1)
    covered = float(np.mean(travel > 0))
    rows.append(("fluorojax render_mesh (jit, hits K=8 + travel)", t_fj, f"compile + first run {first:.1f} s", "-"))

    soft = jax.jit(lambda m, p: render_mesh_soft(m, camera, p, edge_width=1.0))
    moved = lambda x: mesh.transform(make_pose(so3_exp(x[3:]), x[:3]))  # noqa: E731
    soft_grad = jax.jit(jax.grad(lambda x: jnp.sum(render_mesh_soft(moved(x), camera, pose, edge_width=1.0) ** 2)))
    x0 = jnp.zeros(6, jnp.float32)
    for name, call in (
        ("forward", lambda: soft(mesh, pose)),
        ("gradient w.r.t. the screw pose", lambda: soft_grad(x0)),
    ):
        start = time.perf_counter()
        jax.block_until_ready(call())
        first = time.perf_counter() - start
        _, t = timed(lambda call=call: jax.block_until_ready(call()), args.repeats)
        rows.append(
            (f"fluorojax render_mesh_soft (jit, 1 px edge), {name}", t, f"compile + first run {first:.1f} s", "-")
        )

    if args.blocks_size:
        small = Camera(args.blocks_size, args.blocks_size, 0.15 * 512 / args.blocks_size, 1000.0)
        for path, chunk in (("pairs", None), ("blocks", 1 << 22)):  # blocks of 2^22 pairs: bounded CPU memory
            call = jax.jit(
                lambda m, p, path=path, chunk=chunk: render_mesh(m, small, p, max_hits=8, chunk=chunk, path=path)
            )
            start = time.perf_counter()
            jax.block_until_ready(call(mesh, pose))
            first = time.perf_counter() - start
            _, t = timed(lambda call=call: jax.block_until_ready(call(mesh, pose)), args.repeats)
            rows.append(
                (
                    f"fluorojax render_mesh, {path} schedule forced, {args.blocks_size} x {args.blocks_size}",
                    t,
                    f"compile + first run {first:.1f} s",
                    "-",
                )
            )

    tri = trimesh.ray.ray_triangle.RayMeshIntersector(tm)
    ref, t_np = timed(lambda: trimesh_travel(tri, tm, sources, dirs), 1)
    rows.append(("trimesh ray_triangle (NumPy + rtree), all hits", t_np, "", difference(ref, travel)))
    try:
        from trimesh.ray import ray_pyembree

        emb = ray_pyembree.RayMeshIntersector(tm)
        ref_e, t_e = timed(lambda: trimesh_travel(emb, tm, sources, dirs), args.repeats)
        rows.append(("trimesh + embreex (Embree), all hits", t_e, "", difference(ref_e, travel)))
    except ImportError as err:
        rows.append(("trimesh + embreex (Embree)", float("nan"), f"not available: {err}", "-"))

    lines = [
        "# Mesh rendering: 20k-triangle screw, hits + travel",
        "",
        f"{mesh.num_faces} triangles (cortical screw, 40 mm, segments 40, 8 rings per pitch), "
        f"{args.size} x {args.size} rays, {100 * covered:.1f}% of pixels on the screw. "
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores (shared), "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, trimesh {trimesh.__version__}. "
        f"Median of {args.repeats} runs (trimesh NumPy: 1 run).",
        "",
        "| method | time (s) | note | max travel difference vs fluorojax (mm) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {t:.3f} | {note} | {diff} |" for name, t, note, diff in rows]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
