"""Rendering fused with augmentation: DRRs and structure masks for a batch of poses, augmented
in the same jitted call (the training path of a segmentation model, one device, no host trip).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fluorojax.augment import core
from fluorojax.camera import Camera, OrthographicCamera
from fluorojax.raycast import render, render_with_labels
from fluorojax.raycast.drr import check_pose
from fluorojax.raycast.labels import resolve_label_ids
from fluorojax.volume import Volume


def render_augmented(
    key: jax.Array,
    volume: Volume,
    camera: Camera | OrthographicCamera,
    poses: jax.Array,
    transform: core.Transform,
    *,
    label_ids: tuple[int, ...],
    method: str = "siddon",
    vectorize: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Render DRRs and structure masks for a batch of poses and augment them, in one jitted
    call (``transform``, ``label_ids``, ``method`` and ``vectorize`` are static: pass the same
    transform object to reuse the compiled program).

    Args:
      key: PRNG key; one subkey per pose.
      volume: ``Volume`` with data mu in 1/mm (I, J, K) and a label map (I, J, K).
      camera: the imager (``Camera`` or ``OrthographicCamera``).
      poses: (B, 4, 4) world_from_camera.
      transform: a transform taking a raw intensity image, e.g. ``default_pipeline(size)``.
      label_ids: distinct positive structure ids of the label map to make masks of, one mask each.
      method: how the image integrates mu, ``"siddon"`` or ``"trilinear"`` (see
        ``fluorojax.line_integrals``).
      vectorize: how the augmentation is batched, see ``apply_batch`` (default: ``lax.map``
        on the CPU, ``vmap`` on accelerators).

    Masks come from the label pass (``render_with_labels``: every structure's exact travel from
    one read of the label map per voxel); a mask is where the ray's travel through the structure
    is positive, whatever ``method``. With ``"siddon"`` that same traversal integrates mu; with
    ``"trilinear"`` the image is a second, trilinear pass. The raw image is
    ``exp(-integral of mu)`` (detector intensity, flat field 1). Differentiable with respect to
    the poses and the volume's data through the image (the masks are booleans).

    Returns:
      the transform's outputs for the batch: images (B, ...) and masks (B, N, ...), N =
      len(label_ids).
    """
    if volume.labels is None:
        raise ValueError("render_augmented: the volume needs a label map to make masks")
    if volume.channels is not None:
        raise ValueError(f"render_augmented: volume data must be (I, J, K) mu, got {volume.data.shape}")
    label_ids = resolve_label_ids(volume, label_ids)
    poses = check_pose(poses)
    if poses.ndim != 3:
        raise ValueError(f"render_augmented: poses must be (B, 4, 4), got {poses.shape}")
    return _render_augmented(key, volume, camera, poses, transform, label_ids, method, vectorize)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _render_augmented(key, volume, camera, poses, transform, label_ids, method, vectorize):
    trace = render_with_labels(volume, camera, poses, label_ids)
    integrals = trace.image if method == "siddon" else render(volume, camera, poses, method=method)
    keys = jax.random.split(key, poses.shape[0])
    return core.apply_batch(transform, keys, jnp.exp(-integrals), trace.travel > 0, vectorize=vectorize)
