"""Host-side (NumPy) pixel-grid operations on masks and images: resizing at pixel centres and
bounding boxes.

These run in the dataset reader's loader thread and in the writer, on the host, per sample:
NumPy keeps them free of JAX compilation and device transfers there. (``fluorojax.augment``'s
``resize`` is the jittable JAX counterpart for training pipelines.)
"""

from __future__ import annotations

import numpy as np


def _source_index(n_out: int, n_in: int) -> np.ndarray:
    """Nearest source index of each output pixel centre."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., h, w) -> (..., H, W) nearest neighbour at pixel centres."""
    h, w = array.shape[-2:]
    if (h, w) == size:
        return array
    return array[..., _source_index(size[0], h)[:, None], _source_index(size[1], w)[None, :]]


def _linear_weights(n_out: int, n_in: int):
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (x - lo).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) bilinear at pixel centres (edge pixels clamp), float32."""
    if image.shape == size:
        return image
    r0, r1, fr = _linear_weights(size[0], image.shape[0])
    c0, c1, fc = _linear_weights(size[1], image.shape[1])
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return (rows[:, c0] * (1 - fc) + rows[:, c1] * fc).astype(np.float32)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(H, W) bool -> (x0, y0, x1, y1) pixels, the half-open box [x0, x1) x [y0, y1) around the
    mask's pixels; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
