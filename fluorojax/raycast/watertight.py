"""Watertight ray-triangle crossings: each crossing of a closed surface counted exactly once.

The test follows Woop, Benthin and Wald (JCGT 2013): vertices are moved into a per-ray sheared
frame where the ray is the +z axis, and a triangle is hit when its three 2D edge functions
agree in sign. Two changes make it exact for rays through shared edges and vertices:

  * every edge function is evaluated once per edge, canonically (from its lower to its higher
    vertex index), and its sign is exact (``predicates.det2_sign`` where the float32 sign is
    not certain), so the triangles that share an edge agree on the side of the ray;
  * an exact zero is resolved by a symbolic perturbation of the ray (by (eps, eps^2) in the
    sheared plane), which assigns the ray to exactly one of the triangles around an edge or a
    vertex.

A hit is an exit when the face normal ``cross(v1 - v0, v2 - v0)`` points along the ray, else an
entry. Everything broadcasts over leading dimensions, so the same code tests (triangle, pixel)
pairs gathered in a list or a block of triangles against a block of pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fluorojax.raycast.predicates import det2_sign


def edge_layout(faces: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Canonical edges of each face: edge k joins corners (k + 1, k + 2) mod 3.

    faces: (F, 3) int32. Returns (lo, hi, orient): (F, 3) local corner of the lower / higher
    vertex index and (F, 3) float32 +1 when the edge runs lo -> hi in the face's winding, else -1.
    """
    a = faces[:, (1, 2, 0)]
    b = faces[:, (2, 0, 1)]
    ca = jnp.broadcast_to(jnp.array([1, 2, 0], jnp.int32), faces.shape)
    cb = jnp.broadcast_to(jnp.array([2, 0, 1], jnp.int32), faces.shape)
    forward = a < b
    lo = jnp.where(forward, ca, cb)
    hi = jnp.where(forward, cb, ca)
    return lo, hi, jnp.where(forward, 1.0, -1.0).astype(jnp.float32)


def _one_of_three(k, a0, a1, a2):
    """Elementwise a_k for an index k in {0, 1, 2} (an axis or a corner; broadcasting)."""
    return jnp.where(k == 0, a0, jnp.where(k == 1, a1, a2))


def plane_depth(origin: jax.Array, direction: jax.Array, tri: jax.Array, hit: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Depth (...,) mm from ``origin`` along ``direction`` to the plane of ``tri`` where ``hit``
    (finite elsewhere), and the denominator ``direction . normal`` (...,)."""
    normal = jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    denom = jnp.sum(direction * normal, axis=-1)
    num = jnp.sum(normal * (tri[..., 0, :] - origin), axis=-1)
    return num / jnp.where(hit, denom, 1.0), denom


def crossing(
    origin: jax.Array,
    direction: jax.Array,
    t0: jax.Array,
    tri: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    orient: jax.Array,
    *,
    skip_exact: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Watertight test of rays against triangles, broadcasting over leading dimensions.

    origin: (..., 3) world mm (the source moved by t0 along the ray, near the mesh);
    direction: (..., 3) unit; t0: (...) mm; tri: (..., 3, 3) world mm; lo, hi: (..., 3)
    canonical edge corners; orient: (..., 3) +-1. skip_exact (static): evaluate the exact
    expansion only when some edge function of the call needs it (a ``lax.cond``, worth it on
    the CPU); False evaluates it everywhere with no branch (the GPU shape). Same values.
    Returns (edge_hit, t, sign): the ray meets the triangle's plane inside it (bool), its depth
    from the shifted origin (mm, 0 where no hit), +1 exit / -1 entry / 0 miss with hits at or
    behind the source removed.
    """
    kz = jnp.argmax(jnp.abs(direction), axis=-1)
    kx = (kz + 1) % 3
    ky = (kx + 1) % 3
    dx, dy, dz = (_one_of_three(k, direction[..., 0], direction[..., 1], direction[..., 2]) for k in (kx, ky, kz))
    sx, sy = dx / dz, dy / dz
    rel = [tri[..., :, c] - origin[..., None, c] for c in range(3)]  # 3 x (..., 3 corners)
    rx, ry, rz = (_one_of_three(k[..., None], *rel) for k in (kx, ky, kz))
    px = rx - sx[..., None] * rz
    py = ry - sy[..., None] * rz
    corner = lambda p, c: _one_of_three(c, p[..., 0:1], p[..., 1:2], p[..., 2:3])  # noqa: E731
    lx, ly, hx, hy = corner(px, lo), corner(py, lo), corner(px, hi), corner(py, hi)
    # float sign where it is certain (|error| <= 3 u (|a| + |b|), u = 2^-24), the exact one otherwise
    a, b = lx * hy, ly * hx
    f = a - b
    unsure = jnp.abs(f) <= 1e-6 * (jnp.abs(a) + jnp.abs(b))
    exact = lambda: jnp.where(unsure, det2_sign(lx, ly, hx, hy), jnp.sign(f))  # noqa: E731
    s = jax.lax.cond(jnp.any(unsure), exact, lambda: jnp.sign(f)) if skip_exact else exact()
    # exact zero: the ray perturbed by (eps, eps^2) lies left of lo -> hi iff Dy < 0, or Dy == 0 and Dx > 0
    ddx, ddy = hx - lx, hy - ly
    tie = jnp.where(ddy < 0, 1.0, jnp.where(ddy > 0, -1.0, jnp.sign(ddx)))
    e = jnp.where(s == 0, tie, s) * orient
    front = jnp.all(e > 0, axis=-1)
    back = jnp.all(e < 0, axis=-1)
    t, denom = plane_depth(origin, direction, tri, front | back)
    edge_hit = (front | back) & (denom != 0)
    t = jnp.where(edge_hit, t, 0.0)
    hit = edge_hit & (t0 + t > 0)
    sign = jnp.where(hit, jnp.where(jnp.where(dz > 0, front, back), 1, -1), 0)
    return edge_hit, t, sign
