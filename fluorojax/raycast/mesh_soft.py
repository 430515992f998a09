"""Soft (differentiable) masks of triangle meshes: an outline that gradients can move.

``render_mesh_soft`` finds each pixel's nearest projected triangle over the (triangle, pixel)
pairs of the triangles' projected boxes grown by the edge width, with the schedules of
``raycast.mesh_render`` (the CPU's pair loop, the GPU's static block scan; same pairs, same
nearest triangle: the lowest face index among equally near ones), and differentiates the
distance to that triangle only, so the backward pass costs one distance per pixel.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete
from fluorojax.camera import Camera, OrthographicCamera
from fluorojax.mesh import Mesh
from fluorojax.raycast.blocks import PAIRS_PER_STEP, block_scan
from fluorojax.raycast.mesh_render import (
    PAIR_CHUNK,
    by_platform,
    check_mesh_args,
    map_poses,
)
from fluorojax.raycast.pairs import pair_loop, pixel_boxes


class SoftConfig(NamedTuple):
    """Static settings of one soft render: image width (px), pairs per step (None: each
    schedule's default), schedule."""

    width: int
    chunk: int | None = None
    path: str = "auto"


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


def _nearest_pairs(cfg, uv, boxes, pixels):
    npix, big = pixels.shape[0], jnp.iinfo(jnp.int32).max

    def body(carry, face, pixel, live):
        best, nearest = carry
        d2 = jnp.where(live, _distance2(pixels[pixel], uv[face]), jnp.inf)
        least = jnp.full((npix,), jnp.inf).at[pixel].min(d2)
        win = live & (d2 == least[pixel]) & (d2 < best[pixel])
        face_won = jnp.full((npix,), big).at[jnp.where(win, pixel, npix)].min(face, mode="drop")
        return jnp.minimum(best, least), jnp.where(face_won < big, face_won, nearest)

    init = jnp.full((npix,), jnp.inf, jnp.float32), jnp.full((npix,), -1, jnp.int32)
    return pair_loop(boxes, cfg.width, cfg.chunk or PAIR_CHUNK, body, init)[1]


def _nearest_blocks(cfg, uv, boxes, pixels):
    npix = pixels.shape[0]

    def body(carry, block, face, live, in_box):
        best, nearest = carry
        d2 = jnp.where(in_box, _distance2(pixels[:, None], block[0][None]), jnp.inf)
        arg = jnp.argmin(d2, axis=1)  # the first, so the lowest face, among equal distances
        least = jnp.take_along_axis(d2, arg[:, None], axis=1)[:, 0]
        won = least < best
        return (jnp.where(won, least, best), jnp.where(won, face[arg], nearest)), None

    init = jnp.full((npix,), jnp.inf, jnp.float32), jnp.full((npix,), -1, jnp.int32)
    return block_scan(body, init, (uv,), boxes, cfg.width, npix, cfg.chunk or PAIRS_PER_STEP)[0][1]


def _nearest_faces(cfg, uv, boxes, pixels):
    """(P,) int32 index of the projected triangle nearest each pixel centre among those whose
    (padded) boxes hold it, -1 for none. uv: (F, 3, 2) px; pixels: (P, 2) px."""
    return by_platform(
        cfg.path, functools.partial(_nearest_pairs, cfg), functools.partial(_nearest_blocks, cfg), uv, boxes, pixels
    )


def _render_soft_one(mesh, camera, cfg, edge_width, pose):
    tri = mesh.vertices[mesh.faces]  # (F, 3, 3)
    uv = camera.project(pose, tri)  # (F, 3, 2)
    pixels = camera.pixel_centres().reshape(-1, 2)
    boxes = pixel_boxes(camera, jax.lax.stop_gradient(pose), jax.lax.stop_gradient(tri), edge_width)
    nearest = _nearest_faces(cfg, jax.lax.stop_gradient(uv), boxes, pixels)
    d2 = _distance2(pixels, uv[jnp.maximum(nearest, 0)])
    distance = jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)) * (d2 > 0)  # safe sqrt: zero inside, finite gradient
    soft = jnp.where(nearest >= 0, _smoothstep(1.0 - distance / edge_width), 0.0)
    return soft.reshape(camera.height, camera.width)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _render_soft(mesh, camera, pose, edge_width, cfg):
    return map_poses(functools.partial(_render_soft_one, mesh, camera, cfg, edge_width), pose)


def render_mesh_soft(
    mesh: Mesh,
    camera: Camera | OrthographicCamera,
    pose: jax.Array,
    edge_width: float | jax.Array = 1.0,
    *,
    chunk: int | None = None,
    path: str = "auto",
) -> jax.Array:
    """Soft mask (..., H, W) float32 in [0, 1] of ``mesh``, differentiable w.r.t. vertices and pose.

    The value is ``smoothstep(1 - d / edge_width)`` with d the distance in pixels from the pixel
    centre to the nearest projected triangle: exactly 1 on the projected mesh, fading smoothly
    (C1) to exactly 0 at ``edge_width`` pixels outside it, so the mask and its gradient are
    continuous in the vertices and the pose; gradients come from the outline band. As
    ``edge_width`` -> 0 it tends to ``render_mesh(...).mask``. With a ``Camera`` the mesh must
    lie in front of the source (a triangle with a corner behind it projects wrongly through the
    pinhole); with an ``OrthographicCamera`` triangles wholly behind the plane z = 0, where the
    rays start, are left out like those behind a source. The mesh may be open (the outline
    needs no inside). ``edge_width`` (pixels, > 0) may be traced.

    Args:
      pose: (4, 4) or (B, 4, 4) world_from_camera (a batch is mapped sequentially).
      chunk: (triangle, pixel) pairs per loop step (static), as in ``render_mesh``.
      path: ``"auto"``, ``"pairs"`` or ``"blocks"``, as in ``render_mesh``.
    """
    pose = check_mesh_args(mesh, pose, path, chunk=chunk)
    if is_concrete(edge_width):
        if np.asarray(edge_width).dtype.kind not in "biuf":
            raise TypeError(f"edge_width must be a number of pixels, got {edge_width!r}")
        if not np.all(np.asarray(edge_width) > 0):
            raise ValueError(f"edge_width must be > 0 pixels, got {edge_width!r}")
    edge_width = jnp.asarray(edge_width, jnp.float32)
    return _render_soft(
        mesh, camera, pose, edge_width, SoftConfig(camera.width, None if chunk is None else int(chunk), path)
    )
