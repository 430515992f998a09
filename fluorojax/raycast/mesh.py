"""Triangle meshes -> per-pixel hit depths, travel (path length) and masks, hard and soft.

``render_mesh`` casts every pixel's ray (the half-line from the source through the pixel
centre) against every triangle with a watertight test in the style of Woop, Benthin and Wald
(JCGT 2013): vertices are moved into a per-ray sheared frame where the ray is the +z axis, and
a triangle is hit when the three 2D edge functions agree in sign. Two changes make each
crossing of a closed surface count exactly once, even for rays through shared edges and
vertices (no speckle, no double hits):

  * every edge function is evaluated once per edge, canonically (from its lower to its higher
    vertex index), and its sign is exact: the float32 sign where a forward error bound makes
    it certain, else (for the whole block, rarely) error-free products and a Shewchuk
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

Work is bounded: pixels are processed in square tiles (``lax.map``), triangles in blocks of
spatially sorted faces (``lax.scan`` keeping the ``max_hits`` smallest depths with
``lax.top_k``), and a block is skipped (``lax.cond``) when its screen-space bounding box misses
the tile. Under ``jax.vmap`` the skip becomes a select and every block is computed; a batch
of poses passed as (B, 4, 4) is mapped sequentially instead and keeps the skip.

Gradients: hit decisions are discrete; depths and travel are differentiable with respect to
vertices and pose where rays hit triangle interiors. ``render_mesh_soft`` gives a mask with
a smooth outline whose gradient moves the outline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import pytree_dataclass
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
# scene preparation: spatially sorted, padded triangle blocks and their screen boxes


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


def _morton_order(points):
    """Permutation sorting (N, 3) points along a 30-bit Morton (Z-order) curve."""
    lo = jnp.min(points, axis=0)
    span = jnp.maximum(jnp.max(points, axis=0) - lo, 1e-12)
    q = jnp.clip(((points - lo) / span * 1023.0).astype(jnp.uint32), 0, 1023)

    def spread(x):
        x = (x | (x << 16)) & jnp.uint32(0x030000FF)
        x = (x | (x << 8)) & jnp.uint32(0x0300F00F)
        x = (x | (x << 4)) & jnp.uint32(0x030C30C3)
        return (x | (x << 2)) & jnp.uint32(0x09249249)

    code = spread(q[:, 0]) | (spread(q[:, 1]) << 1) | (spread(q[:, 2]) << 2)
    return jnp.argsort(code)


def _blocks(array, block, fill):
    """(F, ...) -> (F_pad // block, block, ...) padded with ``fill``."""
    pad = (-array.shape[0]) % block
    padded = jnp.concatenate([array, jnp.full((pad,) + array.shape[1:], fill, array.dtype)])
    return padded.reshape((-1, block) + array.shape[1:])


def _screen_boxes(camera, pose, triangles, valid, margin):
    """Pixel-space bounding boxes (u_min, u_max, v_min, v_max) of blocks of triangles.

    triangles: (NB, B, 3, 3) world mm; valid: (NB, B) bool. A triangle with a corner at or
    behind the source plane gets an unbounded box. Returns (NB, 4) float32.
    """
    cam = apply_pose(invert_pose(pose), triangles)
    uv = camera.project(pose, triangles)
    behind = jnp.any(cam[..., 2] <= 1e-3, axis=-1)
    lo = jnp.where(behind[..., None], -jnp.inf, jnp.min(uv, axis=-2))
    hi = jnp.where(behind[..., None], jnp.inf, jnp.max(uv, axis=-2))
    lo = jnp.where(valid[..., None], lo, jnp.inf)
    hi = jnp.where(valid[..., None], hi, -jnp.inf)
    lo = jnp.min(lo, axis=1) - margin
    hi = jnp.max(hi, axis=1) + margin
    return jnp.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=-1)


def _tiles(array, tile):
    """(H, W, ...) -> (n_tiles, tile * tile, ...) with edge padding to whole tiles."""
    h, w = array.shape[:2]
    ph, pw = (-h) % tile, (-w) % tile
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    a = jnp.pad(array, pad, mode="edge")
    a = a.reshape((a.shape[0] // tile, tile, a.shape[1] // tile, tile) + array.shape[2:])
    a = jnp.swapaxes(a, 1, 2)
    return a.reshape((-1, tile * tile) + array.shape[2:])


def _untile(array, h, w, tile):
    """Inverse of ``_tiles``: (n_tiles, tile * tile, ...) -> (H, W, ...)."""
    nh, nw = -(-h // tile), -(-w // tile)
    a = array.reshape((nh, nw, tile, tile) + array.shape[2:])
    a = jnp.swapaxes(a, 1, 2).reshape((nh * tile, nw * tile) + array.shape[2:])
    return a[:h, :w]


def _pixel_grid(camera):
    """(H, W, 2) continuous pixel coordinates (u, v) of the pixel centres."""
    u = jnp.arange(camera.width, dtype=jnp.float32) + 0.5
    v = jnp.arange(camera.height, dtype=jnp.float32) + 0.5
    uu, vv = jnp.meshgrid(u, v)
    return jnp.stack([uu, vv], axis=-1)


def _check_args(mesh, pose, tile, block):
    if not isinstance(mesh, Mesh):
        raise TypeError(f"expected a fluorojax.Mesh, got {type(mesh).__name__}")
    if jnp.shape(pose)[-2:] != (4, 4):
        raise ValueError(f"pose must be (..., 4, 4) world_from_camera, got shape {jnp.shape(pose)}")
    for name, value in (("tile", tile), ("block", block)):
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


def _tile_boxes(pixels):
    """(n_tiles, R, 2) pixel centres -> (n_tiles, 4) (u_min, u_max, v_min, v_max)."""
    lo = jnp.min(pixels, axis=1)
    hi = jnp.max(pixels, axis=1)
    return jnp.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=-1)


def _overlap(tile_box, block_boxes):
    """(4,) tile box vs (NB, 4) block boxes -> (NB,) bool."""
    return (
        (block_boxes[:, 0] <= tile_box[1])
        & (block_boxes[:, 1] >= tile_box[0])
        & (block_boxes[:, 2] <= tile_box[3])
        & (block_boxes[:, 3] >= tile_box[2])
    )


# ----------------------------------------------------------------------------------------
# hard rendering


def _select(k, a0, a1, a2):
    """Elementwise a_k for k in {0, 1, 2} (broadcasting)."""
    return jnp.where(k == 0, a0, jnp.where(k == 1, a1, a2))


def _intersect_block(origin, direction, t0, tri, lo, hi, orient, valid):
    """Watertight intersections of R rays with a block of B triangles.

    origin: (R, 3) world mm (the source moved by t0 along the ray, near the mesh);
    direction: (R, 3) unit; t0: (R,) mm; tri: (B, 3, 3) world mm; lo, hi: (B, 3) canonical
    edge corners; orient: (B, 3) +-1; valid: (B,) bool.
    Returns (t, sign): (R, B) depth from the shifted origin (mm) and +1 exit / -1 entry /
    0 miss, hits at or behind the source removed.
    """
    kz = jnp.argmax(jnp.abs(direction), axis=-1)
    kx = (kz + 1) % 3
    ky = (kx + 1) % 3
    dx, dy, dz = (_select(k, direction[:, 0], direction[:, 1], direction[:, 2]) for k in (kx, ky, kz))
    sx, sy = dx / dz, dy / dz
    rel = [tri[None, :, :, c] - origin[:, None, None, c] for c in range(3)]  # 3 x (R, B, 3)
    rx, ry, rz = (_select(k[:, None, None], *rel) for k in (kx, ky, kz))
    px = rx - sx[:, None, None] * rz
    py = ry - sy[:, None, None] * rz
    corner = lambda p, c: _select(c[None], p[..., 0:1], p[..., 1:2], p[..., 2:3])  # noqa: E731
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
    e = jnp.where(s == 0, tie, s) * orient[None]
    front = jnp.all(e > 0, axis=-1)
    back = jnp.all(e < 0, axis=-1)
    normal = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (B, 3)
    denom = direction @ normal.T  # (R, B)
    hit = (front | back) & valid[None] & (denom != 0)
    num = jnp.sum(normal[None] * (tri[None, :, 0] - origin[:, None]), axis=-1)
    t = num / jnp.where(hit, denom, 1.0)
    hit = hit & (t0[:, None] + t > 0)
    exit_ = jnp.where(dz[:, None] > 0, front, back)
    sign = jnp.where(hit, jnp.where(exit_, 1, -1), 0)
    return jnp.where(hit, t, 0.0), sign


def _render_one(mesh, camera, pose, max_hits, tile, block):
    faces = mesh.faces
    vertices = mesh.vertices
    tri_all = vertices[faces]  # (F, 3, 3)
    order = _morton_order(jnp.mean(jax.lax.stop_gradient(tri_all), axis=1))
    lo, hi, orient = _edge_layout(faces)
    tri_b = _blocks(tri_all[order], block, 0.0)
    lo_b = _blocks(lo[order], block, 0)
    hi_b = _blocks(hi[order], block, 1)
    orient_b = _blocks(orient[order], block, 1.0)
    valid_b = _blocks(jnp.ones((faces.shape[0],), bool), block, False)
    boxes = _screen_boxes(camera, pose, jax.lax.stop_gradient(tri_b), valid_b, 1.0)

    sources, targets = camera.rays(pose)
    direction = targets - sources
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    centre = jax.lax.stop_gradient(0.5 * (jnp.min(vertices, axis=0) + jnp.max(vertices, axis=0)))
    t0 = jax.lax.stop_gradient(jnp.sum((centre - sources) * direction, axis=-1))
    origin = sources + t0[..., None] * direction
    h, w = camera.height, camera.width
    tiled = (_tiles(origin, tile), _tiles(direction, tile), _tiles(t0, tile), _tile_boxes(_tiles(_pixel_grid(camera), tile)))

    def one_tile(args):
        o, d, tt0, box = args
        overlap = _overlap(box, boxes)
        r = o.shape[0]

        @jax.checkpoint
        def step(carry, xs):
            ov, tri, blo, bhi, bor, bval = xs

            def work(c):
                best, tsum, wsum, cnt = c
                t, sign = _intersect_block(o, d, tt0, tri, blo, bhi, bor, bval)
                depth = jnp.where(sign != 0, tt0[:, None] + t, jnp.inf)
                merge = lambda b: -jax.lax.top_k(-jnp.concatenate([b, depth], axis=1), max_hits)[0]  # noqa: E731
                best = jax.lax.cond(jnp.any(sign != 0), merge, lambda b: b, best)
                tsum = tsum + jnp.sum(sign * t, axis=1)
                wsum = wsum + jnp.sum(sign, axis=1)
                cnt = cnt + jnp.sum(sign != 0, axis=1)
                return best, tsum, wsum, cnt

            return jax.lax.cond(ov, work, lambda c: c, carry), None

        init = (
            jnp.full((r, max_hits), jnp.inf, jnp.float32),
            jnp.zeros((r,), jnp.float32),
            jnp.zeros((r,), jnp.int32),
            jnp.zeros((r,), jnp.int32),
        )
        (best, tsum, wsum, cnt), _ = jax.lax.scan(step, init, (overlap, tri_b, lo_b, hi_b, orient_b, valid_b))
        return best, tsum + tt0 * wsum.astype(jnp.float32), wsum, cnt

    best, travel, winding, count = jax.lax.map(one_tile, tiled)
    travel = _untile(travel, h, w, tile)
    return MeshRender(
        hits=_untile(best, h, w, tile),
        travel=travel,
        mask=travel > 0,
        count=_untile(count, h, w, tile),
        winding=_untile(winding, h, w, tile),
    )


def render_mesh(mesh: Mesh, camera, pose, max_hits: int = 8, *, tile: int = 16, block: int = 64) -> MeshRender:
    """Hits, travel and mask of ``mesh`` seen by ``camera`` from ``pose``.

    Args:
      mesh: ``Mesh`` in world mm, closed and outward oriented for a meaningful travel.
      camera: ``Camera``.
      pose: (4, 4) world_from_camera, or (..., 4, 4) (mapped sequentially).
      max_hits: K, the number of nearest crossings kept per pixel (static).
      tile: pixels per tile side (static); block: triangles per block (static). They trade
        speed for memory (one tile x block step holds about 40 * tile^2 * block floats).
    Returns:
      ``MeshRender`` with hits (..., H, W, K) mm, travel (..., H, W) mm, mask, count, winding.
    """
    _check_args(mesh, pose, tile, block)
    if not isinstance(max_hits, int) or max_hits <= 0:
        raise ValueError(f"max_hits must be a positive int, got {max_hits!r}")
    return _map_poses(lambda p: _render_one(mesh, camera, p, max_hits, tile, block), pose)


# ----------------------------------------------------------------------------------------
# soft (differentiable) masks


def _smoothstep(x):
    x = jnp.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _distance_block(pixels, uv):
    """Squared distance (R, B) in px^2 from R pixel centres (R, 2) to B projected triangles (B, 3, 2); 0 inside."""
    a = uv[None, :, (0, 1, 2)]  # (1, B, 3, 2)
    e = uv[None, :, (1, 2, 0)] - a
    rel = pixels[:, None, None, :] - a  # (R, B, 3, 2)
    length2 = jnp.sum(e * e, axis=-1)
    t = jnp.clip(jnp.sum(rel * e, axis=-1) / jnp.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    gap = rel - t[..., None] * e
    d2 = jnp.min(jnp.sum(gap * gap, axis=-1), axis=-1)
    cross = e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]
    inside = jnp.all(cross >= 0, axis=-1) | jnp.all(cross <= 0, axis=-1)
    return jnp.where(inside, 0.0, d2)


def _render_soft_one(mesh, camera, pose, edge_width, tile, block):
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    uv = camera.project(pose, tri)  # (F, 3, 2)
    order = _morton_order(jnp.mean(jax.lax.stop_gradient(tri), axis=1))
    uv_b = _blocks(uv[order], block, 0.0)
    valid_b = _blocks(jnp.ones((tri.shape[0],), bool), block, False)
    tri_b = _blocks(jax.lax.stop_gradient(tri[order]), block, 0.0)
    boxes = _screen_boxes(camera, pose, tri_b, valid_b, 1.0 + edge_width)
    pixels = _tiles(_pixel_grid(camera), tile)
    h, w = camera.height, camera.width
    far = jnp.square(2.0 * edge_width + 2.0)  # beyond the fade: any larger value gives the same mask

    def one_tile(px):
        overlap = _overlap(_tile_boxes(px[None])[0], boxes)

        @jax.checkpoint
        def step(d2, xs):
            ov, uvb, val = xs
            work = lambda d: jnp.minimum(d, jnp.min(jnp.where(val[None], _distance_block(px, uvb), far), axis=1))  # noqa: E731
            return jax.lax.cond(ov, work, lambda d: d, d2), None

        d2, _ = jax.lax.scan(step, jnp.full((px.shape[0],), far), (overlap, uv_b, valid_b))
        distance = jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)) * (d2 > 0)  # safe sqrt: zero inside, finite gradient
        return _smoothstep(1.0 - distance / edge_width)

    return _untile(jax.lax.map(one_tile, pixels), h, w, tile)


def render_mesh_soft(mesh: Mesh, camera, pose, edge_width=1.0, *, tile: int = 16, block: int = 64):
    """Soft mask (..., H, W) float32 in [0, 1] of ``mesh``, differentiable w.r.t. vertices and pose.

    The value is ``smoothstep(1 - d / edge_width)`` with d the distance in pixels from the pixel
    centre to the nearest projected triangle: exactly 1 on the projected mesh, fading smoothly
    (C1) to exactly 0 at ``edge_width`` pixels outside it, so the mask and its gradient are
    continuous in the vertices and the pose; gradients come from the outline band. As
    ``edge_width`` -> 0 it tends to ``render_mesh(...).mask``. The mesh must lie in front of
    the source (a triangle with a corner behind it projects wrongly through the pinhole).
    ``edge_width`` (pixels, > 0) may be traced.
    """
    _check_args(mesh, pose, tile, block)
    edge_width = jnp.asarray(edge_width, jnp.float32)
    return _map_poses(lambda p: _render_soft_one(mesh, camera, p, edge_width, tile, block), pose)
