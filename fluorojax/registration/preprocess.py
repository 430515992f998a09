"""Target preprocessing for registration: which pixels of an X-ray to trust.

A radiograph carries pixels no DRR can explain: saturated pixels (clipped by the detector or by
an intensity window) and collimator shutters (flat, saturated regions whose edges are strong
gradients). ``saturation_mask`` finds them from the image alone.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


def saturation_mask(image: jax.Array, *, margin: int = 2, min_fraction: float = 0.002) -> jax.Array:
    """(H, W) float32 weights in {0, 1}: 0 on saturated pixels and within ``margin`` pixels of them.

    A pixel is saturated when it equals the image's minimum or maximum and that extreme value
    covers at least ``min_fraction`` of the pixels (an unclipped image, whose extremes are
    single pixels, keeps all its pixels). ``margin`` (static, pixels) also drops the blurred
    transition around clipped regions such as collimator edges. Jittable.
    """
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"saturation_mask: margin must be an integer >= 0 pixels, got {margin!r}")
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 2:
        raise ValueError(f"saturation_mask: image must be (H, W), got shape {image.shape}")
    return _saturation_mask(image, margin, jnp.float32(min_fraction))


@partial(jax.jit, static_argnums=1)
def _saturation_mask(image, margin, min_fraction):
    bad = jnp.zeros(image.shape, bool)
    for extreme in (jnp.min(image), jnp.max(image)):
        at = image == extreme
        bad = bad | (at & (jnp.mean(at) >= min_fraction))
    if margin:
        size = 2 * margin + 1
        bad = jax.lax.reduce_window(bad.astype(jnp.float32), 0.0, jax.lax.max, (size, size), (1, 1), "SAME") > 0
    return jnp.where(bad, 0.0, 1.0).astype(jnp.float32)
