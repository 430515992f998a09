"""Watching a registration: the DRR's edges over the target, one frame per optimisation step."""

from __future__ import annotations

import os
from functools import partial
from typing import IO, Any

import jax
import numpy as np

from fluorojax.camera import Camera
from fluorojax.raycast import render
from fluorojax.volume import Volume


@partial(jax.jit, static_argnames=("method", "render_kwargs"))
def _drrs(volume, camera, poses, method, render_kwargs):
    """(N, H, W) DRRs of poses (N, 4, 4), eight at a time."""
    return jax.lax.map(lambda pose: render(volume, camera, pose, method, **dict(render_kwargs)), poses, batch_size=8)


def edges(image: np.ndarray | jax.Array, fraction: float = 0.1) -> np.ndarray:
    """(H, W) bool: the ``fraction`` of pixels with the largest gradient magnitude (central differences)."""
    gy, gx = np.gradient(np.asarray(image, np.float64))
    magnitude = np.hypot(gx, gy)
    return magnitude > np.quantile(magnitude, 1.0 - fraction)


def overlay(target: np.ndarray | jax.Array, drr: np.ndarray | jax.Array) -> np.ndarray:
    """(H, W, 3) uint8: the target in grey (scaled to its 1-99 % quantiles), the DRR's edges in green."""
    t = np.asarray(target, np.float64)
    low, high = np.quantile(t, [0.01, 0.99])
    grey = np.clip((t - low) / max(high - low, 1e-12), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[edges(drr)] = (0.1, 1.0, 0.2)
    return np.round(255 * rgb).astype(np.uint8)


def write_animation(
    path: str | os.PathLike | IO[bytes],
    volume: Volume,
    camera: Camera,
    target_image: np.ndarray | jax.Array,
    poses: np.ndarray | jax.Array,
    *,
    method: str = "siddon",
    duration_ms: int = 80,
    render_kwargs: dict[str, Any] | None = None,
) -> str | os.PathLike | IO[bytes]:
    """Write an animated GIF to ``path`` (a file name or an open binary file): one frame per pose (N, 4, 4) world_from_camera, the
    DRR's edges over the target (H, W); the last frame lasts 1 s. Returns ``path``."""
    from PIL import Image

    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
        raise ValueError(
            f"write_animation: poses must be (N, 4, 4) world_from_camera with N >= 1, got shape {poses.shape}"
        )
    target = np.asarray(target_image, np.float32)
    if target.shape != camera.shape:
        raise ValueError(
            f"write_animation: target_image must be (H, W) = {camera.shape} like the camera, got {target.shape}"
        )
    drrs = np.asarray(_drrs(volume, camera, poses, method, tuple(sorted((render_kwargs or {}).items()))))
    frames = [Image.fromarray(overlay(target, drr)) for drr in drrs]
    durations = [duration_ms] * (len(frames) - 1) + [1000]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path
