"""Triangle meshes -> per-pixel hit depths, travel (path length) and masks, hard and soft.

``render_mesh`` casts every pixel's ray (the half-line from the source through the pixel
centre) against every triangle with a watertight test in the style of Woop, Benthin and Wald
(JCGT 2013): vertices are moved into a per-ray sheared frame where the ray is the +z axis, and
a triangle is hit when the three 2D edge functions agree in sign. Two changes make each
crossing of a closed surface count exactly once, even for rays through shared edges and
vertices (no speckle, no double hits):

  * every edge function is evaluated once per edge, canonically (from its lower to its higher
    vertex index), and its sign is exact: the float32 sign where a forward error bound makes
    it certain, else (for the whole chunk, when any pair needs it) error-free products and a Shewchuk
    expansion in float32; so the triangles that share an edge agree on the side of the ray;
  * an exact zero is resolved by a symbolic perturbation of the ray (by (eps, eps^2) in the
    sheared plane), which assigns the ray to exactly one of the triangles around an edge or a
    vertex.

Depths are distances in mm along the unit ray direction from the source. A hit is an exit
when the face normal ``cross(v1 - v0, v2 - v0)`` points along the ray, else an entry, so for an
outward-oriented closed mesh ``travel = sum(exit depths) - sum(entry depths)`` over all hits
(not only the first ``max_hits``). A source inside a closed mesh contributes its first exit
with no matching entry, which is the path from the source: travel stays exact and
``winding`` (exits - entries) is 1 there. Open or non-manifold meshes give a travel that is
that signed sum, a ``winding`` outside {0, 1} flags them. Objects behind the detector are
counted (the ray is a half-line), objects behind the source are not.

Work is a rasteriser's: each triangle is tested only against the pixels whose centres lie in
its projected bounding box (plus a float32 error margin; the whole image for a triangle
crossing the source plane). These (triangle, pixel) pairs are numbered by prefix sums over the
box areas and handed out ``chunk`` at a time by a ``lax.while_loop``, so memory is fixed and
time grows with the total box area, with nothing ever dropped. Per chunk, hits are
scatter-added into travel, count and winding, and ranked per pixel by rounds of scatter-min to
merge into each pixel's list of the ``max_hits`` nearest.

Gradients: hit decisions are discrete; depths and travel are differentiable (reverse mode,
``jax.grad`` / ``jax.vjp``: a custom VJP reruns the pair loop) with respect to vertices and pose
where rays hit triangle interiors. ``render_mesh_soft`` gives a mask with a smooth outline whose
gradient moves the outline; it finds each pixel's nearest projected triangle with the same pair
loop (boxes grown by the edge width) and differentiates the distance to that triangle only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete, pytree_dataclass
from fluorojax.mesh import Mesh
from fluorojax.transforms import apply_pose, invert_pose


@pytree_dataclass
class MeshRender:
    """Per-pixel result of ``render_mesh``.

    Attributes:
      hits: (H, W, max_hits) float32 mm, depths of the surface crossings along each pixel's
        ray from the source, ascending, padded with inf; for a closed mesh seen from outside
        they alternate entry, exit.
      travel: (H, W) float32 mm, path length through the solid (sum of exits - entries).
      mask: (H, W) bool, ``travel > 0``.
      count: (H, W) int32, number of crossings (may exceed max_hits; hits keeps the nearest).
      winding: (H, W) int32, exits - entries: 0 outside, 1 where the source is inside a closed
        outward mesh; other values mean an open, inverted or non-manifold mesh.
    """

    hits: jnp.ndarray
    travel: jnp.ndarray
    mask: jnp.ndarray
    count: jnp.ndarray
    winding: jnp.ndarray


# ----------------------------------------------------------------------------------------
# exact sign of a 2x2 determinant in float32


def _split(a):
    """a = hi + lo exactly, each with at most 12 significant bits (mask, so no FMA can alter it)."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint32) & jnp.uint32(0xFFFFF000)
    hi = jax.lax.bitcast_convert_type(bits, jnp.float32)
    return hi, a - hi


def _two_product(a, b):
    """(p, e) with p = fl(a * b) and p + e = a * b exactly (Dekker)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a, b):
    x = a + b
    bv = x - a
    av = x - bv
    return x, (a - av) + (b - bv)


def _two_diff(a, b):
    x = a - b
    bv = a - x
    av = x + bv
    return x, (a - av) + (bv - b)


def _det2_sign(ax, ay, bx, by):
    """Exact sign (-1, 0, 1 as float32) of ax * by - ay * bx for float32 inputs."""
    a1, a0 = _two_product(ax, by)
    b1, b0 = _two_product(ay, bx)
    # Shewchuk's Two_Two_Diff: (a1 + a0) - (b1 + b0) as a nonoverlapping expansion, x3 largest.
    i, x0 = _two_diff(a0, b0)
    j, k = _two_sum(a1, i)
    i, x1 = _two_diff(k, b1)
    x3, x2 = _two_sum(j, i)
    return _expansion_sign(x3, x2, x1, x0)


def _expansion_sign(x3, x2, x1, x0):
    s = jnp.sign(x0)
    s = jnp.where(x1 != 0, jnp.sign(x1), s)
    s = jnp.where(x2 != 0, jnp.sign(x2), s)
    return jnp.where(x3 != 0, jnp.sign(x3), s)


# ----------------------------------------------------------------------------------------
# shared helpers


def _pixel_grid(camera):
    """(H, W, 2) continuous pixel coordinates (u, v) of the pixel centres."""
    u = jnp.arange(camera.width, dtype=jnp.float32) + 0.5
    v = jnp.arange(camera.height, dtype=jnp.float32) + 0.5
    uu, vv = jnp.meshgrid(u, v)
    return jnp.stack([uu, vv], axis=-1)


def _check_args(mesh, pose, **sizes):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"expected a fluorojax.Mesh, got {type(mesh).__name__}")
    if jnp.shape(pose)[-2:] != (4, 4):
        raise ValueError(f"pose must be (..., 4, 4) world_from_camera, got shape {jnp.shape(pose)}")
    for name, value in sizes.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _map_poses(fn, pose):
    """Apply ``fn(pose)`` to a (4, 4) pose or sequentially over a (..., 4, 4) batch."""
    pose = jnp.asarray(pose, jnp.float32)
    if pose.ndim == 2:
        return fn(pose)
    batch = pose.shape[:-2]
    out = jax.lax.map(fn, pose.reshape((-1, 4, 4)))
    return jax.tree_util.tree_map(lambda x: x.reshape(batch + x.shape[1:]), out)


def _pixel_boxes(camera, pose, tri, pad=0.0):
    """Pixels whose centres may see each triangle: (col0, row0, ncols, nrows), each (F,) int32.

    A box holds every pixel centre within ``pad + margin`` px of the projected triangle's
    bounding box, ``margin`` bounding the float32 error of the projection with a wide safety
    factor. A triangle with a corner at or near the source plane gets the whole image, one
    wholly behind it an empty box. tri: (F, 3, 3) world mm; pad: px, may be traced.
    """
    cam = apply_pose(invert_pose(pose), tri)
    k = camera.intrinsics
    z = cam[..., 2]
    near = jnp.any(z <= 1e-3, axis=-1)
    gone = jnp.all(z < -1e-3, axis=-1)
    zs = jnp.where(near[:, None], 1.0, z)
    u = k[0, 0] * cam[..., 0] / zs + k[0, 2]
    v = k[1, 1] * cam[..., 1] / zs + k[1, 2]
    reach = jnp.max(jnp.abs(tri), axis=(1, 2)) + jnp.max(jnp.abs(pose[:3, 3]))
    spread = jnp.maximum(k[0, 0], k[1, 1]) + jnp.max(jnp.abs(u - k[0, 2]) + jnp.abs(v - k[1, 2]), axis=-1)
    margin = pad + 0.05 + 1e-5 * spread * reach / jnp.min(zs, axis=-1)

    def span(p, n):
        first = jnp.ceil(jnp.clip(jnp.min(p, axis=-1) - 0.5 - margin, -1.0, n))
        last = jnp.floor(jnp.clip(jnp.max(p, axis=-1) - 0.5 + margin, -1.0, n))
        first = jnp.where(near, 0, jnp.maximum(first, 0)).astype(jnp.int32)
        last = jnp.where(near, n - 1, jnp.minimum(last, n - 1)).astype(jnp.int32)
        return first, jnp.where(gone, 0, jnp.maximum(last - first + 1, 0))

    col0, ncols = span(u, camera.width)
    row0, nrows = span(v, camera.height)
    return col0, row0, ncols, nrows


def _pair_loop(boxes, width, chunk, body, carry):
    """Run ``body(carry, face, pixel, live)`` over every (triangle, pixel in its box) pair.

    Pairs are numbered triangle by triangle (prefix sums of the box areas) and handed out
    ``chunk`` at a time by a ``lax.while_loop``, so memory is fixed and no pair is dropped
    whatever the boxes. Offsets are computed over windows of triangles with areas clamped to
    ``chunk + 1`` (which keeps every offset up to ``chunk`` exact), so they fit int32 for any
    image. face, pixel: (chunk,) int32 (face index, flat pixel index ``row * width + col``);
    live: (chunk,) bool, False for the padding of the last chunk.
    """
    col0, row0, ncols, nrows = boxes
    n = col0.shape[0]
    window = max(1, min(n, (2**31 - 1) // (chunk + 1) - 1))
    area = jnp.concatenate([ncols * nrows, jnp.zeros((window,), jnp.int32)])
    p = jnp.arange(chunk, dtype=jnp.int32)

    def step(state):
        start, done, carry = state
        first = jnp.arange(window) == 0
        a = jnp.minimum(jax.lax.dynamic_slice(area, (start,), (window,)) - jnp.where(first, done, 0), chunk + 1)
        excl = jnp.cumsum(a) - a
        total = excl[-1] + a[-1]
        tri = jnp.cumsum(jnp.zeros((chunk,), jnp.int32).at[excl].add(1, mode="drop")) - 1
        face = jnp.minimum(start + tri, n - 1)
        local = p - excl[tri] + jnp.where(tri == 0, done, 0)
        nx = jnp.maximum(ncols[face], 1)
        pixel = (row0[face] + local // nx) * width + col0[face] + local % nx
        live = p < total
        carry = body(carry, face, jnp.where(live, pixel, 0), live)
        nxt = jnp.sum(excl <= chunk) - 1  # the window triangle holding pair ``chunk`` when total > chunk
        more = total > chunk
        start = jnp.where(more, start + nxt, start + window)
        done = jnp.where(more, chunk - excl[nxt] + jnp.where(nxt == 0, done, 0), 0)
        return start, done, carry

    _, _, carry = jax.lax.while_loop(lambda s: s[0] < n, step, (jnp.int32(0), jnp.int32(0), carry))
    return carry


# ----------------------------------------------------------------------------------------
# hard rendering


def _edge_layout(faces):
    """Canonical edges of each face: edge k joins corners (k + 1, k + 2) mod 3.

    Returns (lo, hi, orient): (F, 3) local corner of the lower / higher vertex index and
    (F, 3) float32 +1 when the edge runs lo -> hi in the face's winding, else -1.
    """
    a = faces[:, (1, 2, 0)]
    b = faces[:, (2, 0, 1)]
    ca = jnp.broadcast_to(jnp.array([1, 2, 0], jnp.int32), faces.shape)
    cb = jnp.broadcast_to(jnp.array([2, 0, 1], jnp.int32), faces.shape)
    forward = a < b
    lo = jnp.where(forward, ca, cb)
    hi = jnp.where(forward, cb, ca)
    return lo, hi, jnp.where(forward, 1.0, -1.0).astype(jnp.float32)


def _select(k, a0, a1, a2):
    """Elementwise a_k for k in {0, 1, 2} (broadcasting)."""
    return jnp.where(k == 0, a0, jnp.where(k == 1, a1, a2))


def _plane_depth(origin, direction, tri, hit):
    """Depth (...,) mm from ``origin`` along ``direction`` to the plane of ``tri`` where ``hit``, else 0/1 (finite)."""
    normal = jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    denom = jnp.sum(direction * normal, axis=-1)
    num = jnp.sum(normal * (tri[..., 0, :] - origin), axis=-1)
    return num / jnp.where(hit, denom, 1.0), denom


def _crossing(origin, direction, t0, tri, lo, hi, orient):
    """Watertight test of rays against triangles, broadcasting over leading dimensions.

    origin: (..., 3) world mm (the source moved by t0 along the ray, near the mesh);
    direction: (..., 3) unit; t0: (...) mm; tri: (..., 3, 3) world mm; lo, hi: (..., 3)
    canonical edge corners; orient: (..., 3) +-1.
    Returns (edge_hit, t, sign): the ray meets the triangle's plane inside it (bool), its depth
    from the shifted origin (mm, 0 where no hit), +1 exit / -1 entry / 0 miss with hits at or
    behind the source removed.
    """
    kz = jnp.argmax(jnp.abs(direction), axis=-1)
    kx = (kz + 1) % 3
    ky = (kx + 1) % 3
    dx, dy, dz = (_select(k, direction[..., 0], direction[..., 1], direction[..., 2]) for k in (kx, ky, kz))
    sx, sy = dx / dz, dy / dz
    rel = [tri[..., :, c] - origin[..., None, c] for c in range(3)]  # 3 x (..., 3 corners)
    rx, ry, rz = (_select(k[..., None], *rel) for k in (kx, ky, kz))
    px = rx - sx[..., None] * rz
    py = ry - sy[..., None] * rz
    corner = lambda p, c: _select(c, p[..., 0:1], p[..., 1:2], p[..., 2:3])  # noqa: E731
    lx, ly, hx, hy = corner(px, lo), corner(py, lo), corner(px, hi), corner(py, hi)
    # float sign where it is certain (|error| <= 3 u (|a| + |b|), u = 2^-24), the exact one otherwise
    a, b = lx * hy, ly * hx
    f = a - b
    unsure = jnp.abs(f) <= 1e-6 * (jnp.abs(a) + jnp.abs(b))
    s = jax.lax.cond(
        jnp.any(unsure),
        lambda: jnp.where(unsure, _det2_sign(lx, ly, hx, hy), jnp.sign(f)),
        lambda: jnp.sign(f),
    )
    # exact zero: the ray perturbed by (eps, eps^2) lies left of lo -> hi iff Dy < 0, or Dy == 0 and Dx > 0
    ddx, ddy = hx - lx, hy - ly
    tie = jnp.where(ddy < 0, 1.0, jnp.where(ddy > 0, -1.0, jnp.sign(ddx)))
    e = jnp.where(s == 0, tie, s) * orient
    front = jnp.all(e > 0, axis=-1)
    back = jnp.all(e < 0, axis=-1)
    t, denom = _plane_depth(origin, direction, tri, front | back)
    edge_hit = (front | back) & (denom != 0)
    t = jnp.where(edge_hit, t, 0.0)
    hit = edge_hit & (t0 + t > 0)
    sign = jnp.where(hit, jnp.where(jnp.where(dz > 0, front, back), 1, -1), 0)
    return edge_hit, t, sign


def _pair_test(scene, rays, face, pixel, live):
    """Gather one chunk of (triangle, pixel) pairs and test them: (tri, o, d, edge_hit, t, sign, t0)."""
    tri, lo, hi, orient = (x[face] for x in scene)
    o, d, t0 = (x[pixel] for x in rays)
    edge_hit, t, sign = _crossing(o, d, t0, tri, lo, hi, orient)
    sign = jnp.where(live, sign, 0)
    return tri, o, d, edge_hit, t, sign, t0


def _merge_nearest(best, ids, pixel, depth, face, max_hits):
    """Merge a chunk's hits into the per-pixel lists of the ``max_hits`` nearest (depth, face).

    best, ids: (P + 1, K) float32 mm / int32, ascending per row (row P is a sink); pixel: (N,)
    int32, P for no hit; depth: (N,) mm; face: (N,) int32. No sort (XLA's CPU sort is slow):
    round j takes, in every pixel, the remaining hit of least (depth, face) by two scatter-mins
    and gives it rank j; the rank-0 hit of each pixel then merges its pixel's ranked hits with
    the stored row, each element going to its rank in the other list plus its own.
    """
    sink, n, k = best.shape[0] - 1, pixel.shape[0], max_hits
    big = jnp.iinfo(jnp.int32).max

    def take(state):
        j, rank, left = state
        d = jnp.where(left, depth, jnp.inf)
        least = jnp.full((sink + 1,), jnp.inf).at[pixel].min(d)[pixel]
        tied = left & (d == least)
        f = jnp.where(tied, face, big)
        win = tied & (f == jnp.full((sink + 1,), big).at[pixel].min(f)[pixel])
        return j + 1, jnp.where(win, j, rank), left & ~win

    state = (jnp.int32(0), jnp.full((n,), k, jnp.int32), pixel < sink)
    _, rank, _ = jax.lax.while_loop(lambda s: (s[0] < k) & jnp.any(s[2]), take, state)
    head = rank == 0
    index = jnp.arange(n, dtype=jnp.int32)
    first = jnp.zeros((sink + 1,), jnp.int32).at[jnp.where(head, pixel, sink + 1)].set(index, mode="drop")
    row = first[pixel]  # each hit's rank-0 hit, whose row of new_d collects the pixel's ranked hits
    new_d = jnp.full((n, k), jnp.inf).at[row, rank].set(depth, mode="drop")
    new_f = jnp.full((n, k), -1, jnp.int32).at[row, rank].set(face, mode="drop")
    old_d, old_f = best[pixel], ids[pixel]
    slots = jnp.arange(k, dtype=jnp.int32)
    pos_old = slots + jnp.sum(new_d[:, None, :] < old_d[:, :, None], axis=-1, dtype=jnp.int32)  # ties: stored first
    pos_new = slots + jnp.sum(old_d[:, None, :] <= new_d[:, :, None], axis=-1, dtype=jnp.int32)
    target = jnp.where(head, pixel, sink + 1)[:, None]
    best = best.at[target, pos_old].set(old_d, mode="drop").at[target, pos_new].set(new_d, mode="drop")
    ids = ids.at[target, pos_old].set(old_f, mode="drop").at[target, pos_new].set(new_f, mode="drop")
    return best, ids


def _hits_and_travel(cfg, tri, lo, hi, orient, boxes, origin, direction, t0):
    """(hits (P, K) mm, travel (P,) mm, count (P,), winding (P,)) and the faces of the kept hits
    (P, K) int32 (-1 for none), over P = H * W pixel rays; cfg = (width, max_hits, chunk) static."""
    width, max_hits, chunk = cfg
    npix = origin.shape[0]
    scene, rays = (tri, lo, hi, orient), (origin, direction, t0)

    def body(carry, face, pixel, live):
        best, ids, sums = carry
        _, _, _, _, t, sign, tt0 = _pair_test(scene, rays, face, pixel, live)
        target = jnp.where(sign != 0, pixel, npix)
        signf = sign.astype(jnp.float32)
        sums = sums.at[target].add(jnp.stack([signf * t, signf, jnp.abs(signf)], axis=-1), mode="drop")
        best, ids = _merge_nearest(best, ids, target, jnp.where(sign != 0, tt0 + t, jnp.inf), face, max_hits)
        return best, ids, sums

    init = (
        jnp.full((npix + 1, max_hits), jnp.inf, jnp.float32),
        jnp.full((npix + 1, max_hits), -1, jnp.int32),
        jnp.zeros((npix, 3), jnp.float32),
    )
    best, ids, sums = _pair_loop(boxes, width, chunk, body, init)
    travel = sums[:, 0] + t0 * sums[:, 1]
    return (best[:npix], travel, sums[:, 2].astype(jnp.int32), sums[:, 1].astype(jnp.int32)), ids[:npix]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fragments(cfg, tri, lo, hi, orient, boxes, origin, direction, t0):
    return _hits_and_travel(cfg, tri, lo, hi, orient, boxes, origin, direction, t0)[0]


def _fragments_fwd(cfg, tri, lo, hi, orient, boxes, origin, direction, t0):
    out, ids = _hits_and_travel(cfg, tri, lo, hi, orient, boxes, origin, direction, t0)
    return out, (tri, lo, hi, orient, boxes, origin, direction, t0, ids)


def _fragments_bwd(cfg, res, cotangents):
    """Reruns the pair loop: every hit passes its depth's cotangent (travel's, by its sign, plus
    that of the hits slot it holds) to its triangle's corners and its ray."""
    tri, lo, hi, orient, boxes, origin, direction, t0, ids = res
    g_hits, g_travel = cotangents[0], cotangents[1]
    width, _, chunk = cfg
    scene, rays = (tri, lo, hi, orient), (origin, direction, t0)

    def body(carry, face, pixel, live):
        g_tri, g_o, g_d = carry
        tri_p, o, d, edge_hit, _, sign, _ = _pair_test(scene, rays, face, pixel, live)
        slot = jnp.sum(jnp.where(ids[pixel] == face[:, None], g_hits[pixel], 0.0), axis=-1)
        w = jnp.where(sign != 0, g_travel[pixel] * sign + slot, 0.0)
        _, vjp = jax.vjp(lambda o_, d_, tri_: _plane_depth(o_, d_, tri_, edge_hit)[0], o, d, tri_p)
        go, gd, gt = vjp(w)
        return g_tri.at[face].add(gt), g_o.at[pixel].add(go), g_d.at[pixel].add(gd)

    zeros = (jnp.zeros_like(tri), jnp.zeros_like(origin), jnp.zeros_like(direction))
    g_tri, g_o, g_d = _pair_loop(boxes, width, chunk, body, zeros)
    return g_tri, None, None, None, None, g_o, g_d, None


_fragments.defvjp(_fragments_fwd, _fragments_bwd)


def _render_one(mesh, camera, pose, max_hits, chunk):
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    lo, hi, orient = _edge_layout(mesh.faces)
    boxes = _pixel_boxes(camera, jax.lax.stop_gradient(pose), jax.lax.stop_gradient(tri))
    direction = camera.ray_directions(pose)
    source = pose[:3, 3]
    centre = jax.lax.stop_gradient(0.5 * (jnp.min(mesh.vertices, axis=0) + jnp.max(mesh.vertices, axis=0)))
    t0 = jax.lax.stop_gradient(jnp.sum((centre - source) * direction, axis=-1))
    origin = source + t0[..., None] * direction
    h, w = camera.height, camera.width
    flat = lambda x: x.reshape((h * w,) + x.shape[2:])  # noqa: E731
    rays = flat(origin), flat(direction), flat(t0)
    hits, travel, count, winding = _fragments((w, max_hits, chunk), tri, lo, hi, orient, boxes, *rays)
    image = lambda x: x.reshape((h, w) + x.shape[1:])  # noqa: E731
    travel = image(travel)
    return MeshRender(hits=image(hits), travel=travel, mask=travel > 0, count=image(count), winding=image(winding))


def render_mesh(mesh: Mesh, camera, pose, max_hits: int = 8, *, chunk: int = 32768) -> MeshRender:
    """Hits, travel and mask of ``mesh`` seen by ``camera`` from ``pose``.

    Args:
      mesh: ``Mesh`` in world mm, closed and outward oriented for a meaningful travel.
      camera: ``Camera``.
      pose: (4, 4) world_from_camera, or (..., 4, 4) (mapped sequentially).
      max_hits: K, the number of nearest crossings kept per pixel (static).
      chunk: (triangle, pixel) pairs tested per loop step (static): memory is about
        ``(100 + 8 * max_hits) * chunk`` floats besides the (H, W, K) outputs and the (H, W, 3)
        rays; time grows with the number of pairs, the summed pixel areas of the triangles'
        projected boxes (the whole image for a triangle crossing the source plane).
    Returns:
      ``MeshRender`` with hits (..., H, W, K) mm, travel (..., H, W) mm, mask, count, winding.
    """
    _check_args(mesh, pose, max_hits=max_hits, chunk=chunk)
    return _map_poses(lambda p: _render_one(mesh, camera, p, max_hits, chunk), pose)


# ----------------------------------------------------------------------------------------
# soft (differentiable) masks


def _smoothstep(x):
    x = jnp.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _distance2(pixel, uv):
    """Squared distance (...,) px^2 from pixel centres (..., 2) to projected triangles (..., 3, 2);
    0 inside a triangle of non-zero area."""
    a = uv
    e = uv[..., (1, 2, 0), :] - a
    rel = pixel[..., None, :] - a  # (..., 3, 2)
    length2 = jnp.sum(e * e, axis=-1)
    t = jnp.clip(jnp.sum(rel * e, axis=-1) / jnp.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    gap = rel - t[..., None] * e
    d2 = jnp.min(jnp.sum(gap * gap, axis=-1), axis=-1)
    cross = e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]
    area = e[..., 0, 0] * e[..., 1, 1] - e[..., 0, 1] * e[..., 1, 0]
    inside = (area != 0) & (jnp.all(cross >= 0, axis=-1) | jnp.all(cross <= 0, axis=-1))
    return jnp.where(inside, 0.0, d2)


def _nearest_faces(cfg, uv, boxes, pixels):
    """(P,) int32 index of the projected triangle nearest each pixel centre among those whose
    (padded) boxes hold it, -1 for none. uv: (F, 3, 2) px; pixels: (P, 2) px; cfg = (width, chunk)."""
    width, chunk = cfg
    npix = pixels.shape[0]

    def body(carry, face, pixel, live):
        best, nearest = carry
        d2 = jnp.where(live, _distance2(pixels[pixel], uv[face]), jnp.inf)
        least = jnp.full((npix,), jnp.inf).at[pixel].min(d2)
        win = live & (d2 == least[pixel]) & (d2 < best[pixel])
        face_won = jnp.full((npix,), -1, jnp.int32).at[jnp.where(win, pixel, npix)].max(face, mode="drop")
        return jnp.minimum(best, least), jnp.where(face_won >= 0, face_won, nearest)

    init = jnp.full((npix,), jnp.inf, jnp.float32), jnp.full((npix,), -1, jnp.int32)
    return _pair_loop(boxes, width, chunk, body, init)[1]


def _render_soft_one(mesh, camera, pose, edge_width, chunk):
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    uv = camera.project(pose, tri)  # (F, 3, 2)
    pixels = _pixel_grid(camera).reshape(-1, 2)
    boxes = _pixel_boxes(camera, jax.lax.stop_gradient(pose), jax.lax.stop_gradient(tri), edge_width)
    nearest = _nearest_faces((camera.width, chunk), jax.lax.stop_gradient(uv), boxes, pixels)
    d2 = _distance2(pixels, uv[jnp.maximum(nearest, 0)])
    distance = jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)) * (d2 > 0)  # safe sqrt: zero inside, finite gradient
    soft = jnp.where(nearest >= 0, _smoothstep(1.0 - distance / edge_width), 0.0)
    return soft.reshape(camera.height, camera.width)


def render_mesh_soft(mesh: Mesh, camera, pose, edge_width=1.0, *, chunk: int = 32768):
    """Soft mask (..., H, W) float32 in [0, 1] of ``mesh``, differentiable w.r.t. vertices and pose.

    The value is ``smoothstep(1 - d / edge_width)`` with d the distance in pixels from the pixel
    centre to the nearest projected triangle: exactly 1 on the projected mesh, fading smoothly
    (C1) to exactly 0 at ``edge_width`` pixels outside it, so the mask and its gradient are
    continuous in the vertices and the pose; gradients come from the outline band. As
    ``edge_width`` -> 0 it tends to ``render_mesh(...).mask``. The mesh must lie in front of
    the source (a triangle with a corner behind it projects wrongly through the pinhole).
    ``edge_width`` (pixels, > 0) may be traced.

    The nearest triangle of each pixel is found as ``render_mesh`` finds hits, over the
    (triangle, pixel) pairs of the triangles' projected boxes grown by ``edge_width``, ``chunk``
    pairs per loop step (static); only the distance to it is differentiated, so the backward
    pass costs one distance per pixel.
    """
    _check_args(mesh, pose, chunk=chunk)
    if is_concrete(edge_width) and not np.all(np.asarray(edge_width) > 0):
        raise ValueError(f"edge_width must be > 0 pixels, got {edge_width!r}")
    edge_width = jnp.asarray(edge_width, jnp.float32)
    return _map_poses(lambda p: _render_soft_one(mesh, camera, p, edge_width, chunk), pose)
