"""Image similarity and pose-error metrics for 2D/3D registration.

Image similarities take two images ``x, y`` (H, W) and an optional ``mask`` (H, W) of weights
in [0, 1] (0 ignores a pixel) and return a scalar, higher meaning more similar. Each is
jittable, vmappable over image batches and differentiable in both images; an image of
constant intensity has zero variance and correlates as 0 (with zero gradient), never NaN.

Pose errors compare two camera poses ``pose_a, pose_b`` (..., 4, 4) world_from_camera, mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.camera import Camera
from fluorojax.transforms import apply_pose, invert_pose, rotation_angle

_TINY = 1e-30  # variance (intensity^2) below which an image counts as constant


def _check_pair(name, x, y, mask):
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"{name}: images must both be (H, W) of equal shape, got {x.shape} and {y.shape}")
    if mask is None:
        mask = jnp.ones_like(x)
    else:
        mask = jnp.asarray(mask, jnp.float32)
        if mask.shape != x.shape:
            raise ValueError(f"{name}: mask must have the images' shape {x.shape}, got {mask.shape}")
    return x, y, mask


def _weighted_ncc(x, y, w, axis):
    """NCC over ``axis`` with weights ``w`` (all broadcast); constant images give 0."""
    total = jnp.sum(w, axis=axis, keepdims=True)
    total = jnp.where(total > 0, total, 1.0)
    mx = jnp.sum(w * x, axis=axis, keepdims=True) / total
    my = jnp.sum(w * y, axis=axis, keepdims=True) / total
    dx, dy = x - mx, y - my
    vx = jnp.sum(w * dx * dx, axis=axis) / jnp.squeeze(total, axis)
    vy = jnp.sum(w * dy * dy, axis=axis) / jnp.squeeze(total, axis)
    cov = jnp.sum(w * dx * dy, axis=axis) / jnp.squeeze(total, axis)
    ok = (vx > _TINY) & (vy > _TINY)
    # Safe value inside the where: NaNs in the unused branch would poison reverse mode.
    denom = jnp.sqrt(jnp.where(ok, vx * vy, 1.0))
    return jnp.where(ok, cov / denom, 0.0)


def ncc(x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Zero-normalised cross-correlation of images x, y (H, W) -> scalar in [-1, 1].

    ``sum w (x - mean x)(y - mean y) / sqrt(sum w (x - mean x)^2 sum w (y - mean y)^2)`` with
    mask weights w (means weighted too); invariant to ``x -> a x + b`` for a > 0.
    """
    x, y, mask = _check_pair("ncc", x, y, mask)
    return _weighted_ncc(x, y, mask, axis=(0, 1))


def _patches(image, patch_size):
    """(H, W) -> (H // p, W // p, p * p) non-overlapping patches (the remainder is cropped)."""
    h, w = image.shape[0] // patch_size, image.shape[1] // patch_size
    image = image[: h * patch_size, : w * patch_size]
    return image.reshape(h, patch_size, w, patch_size).transpose(0, 2, 1, 3).reshape(h, w, patch_size * patch_size)


def patch_ncc(x: jax.Array, y: jax.Array, mask: jax.Array | None = None, *, patch_size: int = 13) -> jax.Array:
    """Mean NCC over non-overlapping ``patch_size`` x ``patch_size`` patches -> scalar.

    Rows and columns beyond the last whole patch are ignored. Each patch counts by its mask
    weight (with no mask, a plain mean over patches).
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 2:
        raise ValueError(f"patch_ncc: patch_size must be an integer >= 2 pixels, got {patch_size!r}")
    x, y, mask = _check_pair("patch_ncc", x, y, mask)
    if patch_size > min(x.shape):
        raise ValueError(f"patch_ncc: patch_size {patch_size} exceeds the image shape {x.shape}")
    px, py, pw = (_patches(a, patch_size) for a in (x, y, mask))
    local = _weighted_ncc(px, py, pw, axis=-1)
    weight = jnp.sum(pw, axis=-1)
    return jnp.sum(weight * local) / jnp.maximum(jnp.sum(weight), _TINY)


def multiscale_ncc(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    *,
    patch_sizes: Sequence[int | None] = (None, 13),
    weights: Sequence[float] = (0.5, 0.5),
) -> jax.Array:
    """Weighted sum of NCCs at several patch sizes -> scalar.

    ``patch_sizes`` entries are ints (``patch_ncc``) or None (global ``ncc``); ``weights``
    has one float per entry.
    """
    if len(patch_sizes) != len(weights) or len(patch_sizes) == 0:
        raise ValueError(
            f"multiscale_ncc: patch_sizes {patch_sizes!r} and weights {weights!r} must be non-empty and of equal length"
        )
    total = jnp.zeros((), jnp.float32)
    for size, weight in zip(patch_sizes, weights):
        term = ncc(x, y, mask) if size is None else patch_ncc(x, y, mask, patch_size=size)
        total = total + weight * term
    return total


def _sobel(image):
    """(H, W) -> Sobel derivatives (d/dcol, d/drow), each (H - 2, W - 2) (valid region)."""
    a = image
    dcol = (a[:-2, 2:] + 2 * a[1:-1, 2:] + a[2:, 2:]) - (a[:-2, :-2] + 2 * a[1:-1, :-2] + a[2:, :-2])
    drow = (a[2:, :-2] + 2 * a[2:, 1:-1] + a[2:, 2:]) - (a[:-2, :-2] + 2 * a[:-2, 1:-1] + a[:-2, 2:])
    return dcol, drow


def gradient_ncc(
    x: jax.Array, y: jax.Array, mask: jax.Array | None = None, *, patch_size: int | None = None
) -> jax.Array:
    """Gradient correlation: mean of the NCCs of the Sobel column and row derivatives -> scalar.

    Derivatives use the 3 x 3 Sobel kernels on the interior (H - 2, W - 2); the mask is cropped
    to the same region. ``patch_size`` (int) correlates per patch as in ``patch_ncc``.
    """
    x, y, mask = _check_pair("gradient_ncc", x, y, mask)
    if min(x.shape) < 3:
        raise ValueError(f"gradient_ncc: images must be at least 3 x 3 pixels, got {x.shape}")
    inner = mask[1:-1, 1:-1]
    (xc, xr), (yc, yr) = _sobel(x), _sobel(y)
    if patch_size is None:
        return 0.5 * (ncc(xc, yc, inner) + ncc(xr, yr, inner))
    return 0.5 * (patch_ncc(xc, yc, inner, patch_size=patch_size) + patch_ncc(xr, yr, inner, patch_size=patch_size))


def gradient_field_alignment(
    x: jax.Array, y: jax.Array, mask: jax.Array | None = None, *, eps: float = 0.5
) -> jax.Array:
    """Normalised gradient fields: mean squared cosine of the Sobel gradients' angle -> scalar in [0, 1].

    ``sum w (gx . gy)^2 / ((|gx|^2 + ex^2)(|gy|^2 + ey^2)) / sum w`` over the interior
    (H - 2, W - 2), with ``ex = eps * mean |gx|`` over the mask (and ``ey`` likewise), so that flat, noisy
    regions count little. Each pixel contributes at most 1 whatever its contrast, so strong
    edges that only one image has (metal tools, collimator edges) cannot dominate, and the
    measure ignores the sign of edges and any monotonic-looking change of contrast; invariant to
    ``a x + b`` (a != 0). After Haber and Modersitzki (2006).
    """
    x, y, mask = _check_pair("gradient_field_alignment", x, y, mask)
    if min(x.shape) < 3:
        raise ValueError(f"gradient_field_alignment: images must be at least 3 x 3 pixels, got {x.shape}")
    w = mask[1:-1, 1:-1]
    (xc, xr), (yc, yr) = _sobel(x), _sobel(y)
    nx = xc * xc + xr * xr
    ny = yc * yc + yr * yr
    total = jnp.maximum(jnp.sum(w), _TINY)
    ex = jnp.square(eps * jnp.sum(w * jnp.sqrt(nx + _TINY)) / total) + _TINY
    ey = jnp.square(eps * jnp.sum(w * jnp.sqrt(ny + _TINY)) / total) + _TINY
    # the cosine first: a product of the squared denominators would underflow for a flat image
    cosine = (xc * yc + xr * yr) / (jnp.sqrt(nx + ex) * jnp.sqrt(ny + ey))
    local = cosine * cosine
    return jnp.sum(w * local) / total


def soft_histogram_weights(values: jax.Array, bins: int, sigma: float | jax.Array) -> jax.Array:
    """Parzen (Gaussian) bin memberships of values (N,) in [0, 1] -> (N, bins), rows sum to 1.

    Bin centres are ``linspace(0, 1, bins)``; ``sigma`` is the kernel width in the same units.
    """
    centres = jnp.linspace(0.0, 1.0, bins, dtype=jnp.float32)
    logits = -0.5 * jnp.square((values[:, None] - centres[None, :]) / sigma)
    return jax.nn.softmax(logits, axis=-1)


def _unit_range(image, weight):
    """Rescale to [0, 1] by the min and max over pixels with positive weight."""
    keep = weight > 0
    lo = jnp.min(jnp.where(keep, image, jnp.inf))
    hi = jnp.max(jnp.where(keep, image, -jnp.inf))
    span = hi - lo
    ok = span > 0
    return jnp.where(ok, (image - lo) / jnp.where(ok, span, 1.0), 0.5)


def mutual_information(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array | None = None,
    *,
    bins: int = 32,
    sigma: float | jax.Array | None = None,
) -> jax.Array:
    """Mutual information (nats) of images x, y (H, W) from soft (Parzen) histograms -> scalar.

    Each image is rescaled to [0, 1] by its min and max (so MI is invariant to ``a x + b`` with
    a > 0), every pixel spreads its unit mass over ``bins`` bins with Gaussian weights of
    width ``sigma`` (default one bin spacing, 1 / (bins - 1)), and the mask weights the pixels.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"mutual_information: bins must be an integer >= 2, got {bins!r}")
    sigma = 1.0 / (bins - 1) if sigma is None else sigma
    x, y, mask = _check_pair("mutual_information", x, y, mask)
    w = mask.reshape(-1)
    a = soft_histogram_weights(_unit_range(x, mask).reshape(-1), bins, sigma)
    b = soft_histogram_weights(_unit_range(y, mask).reshape(-1), bins, sigma)
    joint = (a * w[:, None]).T @ b
    joint = joint / jnp.maximum(jnp.sum(joint), _TINY)
    px = jnp.sum(joint, axis=1)
    py = jnp.sum(joint, axis=0)
    outer = px[:, None] * py[None, :]
    ok = (joint > 0) & (outer > 0)
    ratio = jnp.where(ok, joint / jnp.where(ok, outer, 1.0), 1.0)
    return jnp.sum(jnp.where(ok, joint * jnp.log(ratio), 0.0))


def rotation_error(pose_a: jax.Array, pose_b: jax.Array) -> jax.Array:
    """Geodesic angle (...,) radians between the rotations of poses (..., 4, 4)."""
    pose_a = jnp.asarray(pose_a, jnp.float32)
    pose_b = jnp.asarray(pose_b, jnp.float32)
    return rotation_angle(pose_a[..., :3, :3], pose_b[..., :3, :3])


def translation_error(pose_a: jax.Array, pose_b: jax.Array) -> jax.Array:
    """Distance (...,) mm between the translations (the X-ray source positions) of poses (..., 4, 4)."""
    pose_a = jnp.asarray(pose_a, jnp.float32)
    pose_b = jnp.asarray(pose_b, jnp.float32)
    return jnp.linalg.norm(pose_a[..., :3, 3] - pose_b[..., :3, 3], axis=-1)


def _check_points(name, points):
    points = jnp.asarray(points, jnp.float32)
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"{name}: points must be (N, 3) world mm, got shape {points.shape}")
    return points


def mtre(pose_a: jax.Array, pose_b: jax.Array, points: jax.Array) -> jax.Array:
    """Mean target registration error (...,) mm of world points (N, 3) mm under two poses.

    Each point is expressed in the camera frame of each pose, ``inv(pose) @ p``; the error is
    the mean distance between the two, i.e. how far the anatomy at ``points`` is displaced
    relative to the X-ray system when ``pose_b`` is used in place of ``pose_a``.
    """
    points = _check_points("mtre", points)
    pose_a = jnp.asarray(pose_a, jnp.float32)
    pose_b = jnp.asarray(pose_b, jnp.float32)
    ca = apply_pose(invert_pose(pose_a)[..., None, :, :], points)
    cb = apply_pose(invert_pose(pose_b)[..., None, :, :], points)
    return jnp.mean(jnp.linalg.norm(ca - cb, axis=-1), axis=-1)


def reprojection_error(camera: Camera, pose_a: jax.Array, pose_b: jax.Array, points: jax.Array) -> jax.Array:
    """Mean distance (...,) in pixels between the projections of world points (N, 3) mm.

    Projections by ``camera.project`` under ``pose_a`` and ``pose_b`` (..., 4, 4); multiply by
    ``camera.pixel_size`` for millimetres on the detector.
    """
    points = _check_points("reprojection_error", points)
    pose_a = jnp.asarray(pose_a, jnp.float32)
    pose_b = jnp.asarray(pose_b, jnp.float32)
    ua = camera.project(pose_a[..., None, :, :], points)
    ub = camera.project(pose_b[..., None, :, :], points)
    return jnp.mean(jnp.linalg.norm(ua - ub, axis=-1), axis=-1)


def mean_projection_error(
    camera: Camera, pose_a: jax.Array, pose_b: jax.Array, points: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """mPE: mean distance between the projections of world points (N, 3) mm under two poses.

    Returns (px (...,), mm (...,)): in pixels, and in mm on the detector (pixels scaled by the
    camera's pixel size along each axis). Same as ``reprojection_error`` for the pixels.
    """
    points = _check_points("mean_projection_error", points)
    pose_a = jnp.asarray(pose_a, jnp.float32)
    pose_b = jnp.asarray(pose_b, jnp.float32)
    delta = camera.project(pose_a[..., None, :, :], points) - camera.project(pose_b[..., None, :, :], points)
    px = jnp.mean(jnp.linalg.norm(delta, axis=-1), axis=-1)
    mm = jnp.mean(jnp.linalg.norm(delta * camera.pixel_size, axis=-1), axis=-1)
    return px, mm


def mean_reprojection_error(camera: Camera, true_pose: jax.Array, pose: jax.Array, points: jax.Array) -> jax.Array:
    """mRPE (mean reprojection distance, van de Kraats et al. 2005): (...,) mm.

    Each world point (N, 3) mm is projected with ``true_pose``; the ray from ``pose``'s source
    through that pixel (``pose``'s camera) is cast back; the error is the 3D distance from the
    point to that ray, averaged over points. Depth errors along the ray do not count.
    """
    points = _check_points("mean_reprojection_error", points)
    true_pose = jnp.asarray(true_pose, jnp.float32)
    pose = jnp.asarray(pose, jnp.float32)
    uv = camera.project(true_pose[..., None, :, :], points)  # (..., N, 2)
    k_inv = jnp.linalg.inv(camera.intrinsics)
    homog = jnp.concatenate([uv, jnp.ones_like(uv[..., :1])], axis=-1)
    direction_cam = homog @ k_inv.T  # camera-frame ray directions
    rotation = pose[..., None, :3, :3]
    direction = jnp.einsum("...ij,...j->...i", rotation, direction_cam)
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    offset = points - pose[..., None, :3, 3]
    along = jnp.sum(offset * direction, axis=-1, keepdims=True)
    return jnp.mean(jnp.linalg.norm(offset - along * direction, axis=-1), axis=-1)


def double_geodesic(
    pose_a: jax.Array, pose_b: jax.Array, sdd: float | jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Double-geodesic distance of poses (..., 4, 4) as DiffPose/DiffDRR report it.

    Returns (angular (...,) mm, translational (...,) mm, double (...,) mm): the geodesic
    rotation angle times the source-to-detector radius ``sdd / 2``, the distance between the
    translations, and ``sqrt(angular^2 + translational^2)``.
    """
    angular = rotation_error(pose_a, pose_b) * (0.5 * jnp.asarray(sdd, jnp.float32))
    translational = translation_error(pose_a, pose_b)
    return angular, translational, jnp.sqrt(angular * angular + translational * translational)


def summarize(
    camera: Camera, true_poses: jax.Array, poses: jax.Array, points: jax.Array, *, success_mm: float = 1.0
) -> dict[str, float]:
    """Registration metrics over N cases as a dict of Python floats.

    Args:
      camera: ``Camera`` of the cases; true_poses, poses: (N, 4, 4) world_from_camera.
      points: (N_points, 3) world mm, the target points of mTRE, mPE and mRPE.
      success_mm: a case succeeds when its mTRE is below this.
    Returns keys ``success_rate``, ``mtre_p50`` / ``p75`` / ``p95`` (mm), ``mpe_px_p50``,
    ``mpe_mm_p50``, ``mrpe_p50`` (mm), ``double_geodesic_p50`` (mm), ``rotation_deg_p50``.
    """
    true_poses = jnp.asarray(true_poses, jnp.float32)
    poses = jnp.asarray(poses, jnp.float32)
    if true_poses.ndim != 3 or true_poses.shape != poses.shape or true_poses.shape[1:] != (4, 4):
        raise ValueError(f"summarize: poses must both be (N, 4, 4), got {true_poses.shape} and {poses.shape}")
    errors = np.asarray(mtre(true_poses, poses, points), np.float64)
    mpe_px, mpe_mm = (np.asarray(a, np.float64) for a in mean_projection_error(camera, true_poses, poses, points))
    mrpe = np.asarray(mean_reprojection_error(camera, true_poses, poses, points), np.float64)
    dgeo = np.asarray(double_geodesic(true_poses, poses, camera.sdd)[2], np.float64)
    rotation = np.rad2deg(np.asarray(rotation_error(true_poses, poses), np.float64))
    p50, p75, p95 = np.percentile(errors, [50, 75, 95])
    return {
        "success_rate": float(np.mean(errors < success_mm)),
        "mtre_p50": float(p50),
        "mtre_p75": float(p75),
        "mtre_p95": float(p95),
        "mpe_px_p50": float(np.median(mpe_px)),
        "mpe_mm_p50": float(np.median(mpe_mm)),
        "mrpe_p50": float(np.median(mrpe)),
        "double_geodesic_p50": float(np.median(dgeo)),
        "rotation_deg_p50": float(np.median(rotation)),
    }
