"""Rigid transforms: SO(3) / SE(3) parameterisations as plain functions on arrays.

A pose is a (..., 4, 4) homogeneous rigid transform ``[[R, t], [0, 0, 0, 1]]``; in
fluorojax every camera pose is ``world_from_camera`` (camera-to-world), in mm.
Rotations are (..., 3, 3) matrices. Every function takes any leading batch shape, is
jittable and has finite gradients everywhere, including at the identity and at a
rotation angle of pi (Taylor branches below a small threshold; safe values inside
``jnp.where`` because NaNs in an unused branch still poison reverse-mode autodiff).
Arguments that are not arrays of numbers, or whose last axes have the wrong sizes, raise
TypeError / ValueError naming the argument (also under ``jax.jit``: shapes are static); values
are not scanned, so NaN entries give NaN results.

Parameterisations:
  * axis-angle (rotation vector) ``(..., 3)`` radians: ``so3_exp`` / ``so3_log``;
  * unit quaternion ``(..., 4)`` in (w, x, y, z) order: ``quaternion_to_matrix`` /
    ``matrix_to_quaternion``;
  * Euler angles ``(..., 3)`` radians, intrinsic (moving-axes) convention named by a string
    such as ``"ZYX"``: ``R = R_axis0(a0) @ R_axis1(a1) @ R_axis2(a2)``;
  * 6D rotation ``(..., 6)`` (the first two columns of R, Zhou et al. 2019):
    ``rotation_6d_to_matrix`` / ``matrix_to_rotation_6d``;
  * se(3) twist ``(..., 6)`` = (rho [mm], omega [rad]): ``se3_exp`` / ``se3_log``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fluorojax._validate import float_array

_SMALL = 1e-4  # angle (rad) below which Taylor expansions are used in float32


def _skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrix, ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = jnp.zeros_like(x)
    return jnp.stack([jnp.stack([o, -z, y], -1), jnp.stack([z, o, -x], -1), jnp.stack([-y, x, o], -1)], -2)


def make_pose(rotation: ArrayLike, translation: ArrayLike) -> jax.Array:
    """Build poses: rotation (..., 3, 3), translation (..., 3) mm -> (..., 4, 4)."""
    rotation = float_array("make_pose rotation", rotation, (3, 3))
    translation = float_array("make_pose translation", translation, (3,))
    batch = jnp.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    top = jnp.concatenate(
        [jnp.broadcast_to(rotation, batch + (3, 3)), jnp.broadcast_to(translation, batch + (3,))[..., None]],
        axis=-1,
    )
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), batch + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def invert_pose(pose: ArrayLike) -> jax.Array:
    """Inverse of rigid transforms (..., 4, 4), using R^T rather than a general inverse."""
    pose = float_array("invert_pose pose", pose, (4, 4))
    r = pose[..., :3, :3]
    t = pose[..., :3, 3]
    rt = jnp.swapaxes(r, -1, -2)
    return make_pose(rt, -jnp.einsum("...ij,...j->...i", rt, t))


def apply_pose(pose: ArrayLike, points: ArrayLike) -> jax.Array:
    """Transform points (..., 3) by poses (..., 4, 4) broadcast against them.

    Written as three multiply-adds rather than an einsum: XLA:CPU runs a broadcast batch of
    3 x 3 products about 5x slower than the elementwise form.
    """
    pose = float_array("apply_pose pose", pose, (4, 4))
    points = float_array("apply_pose points", points, (3,))
    rotation = pose[..., :3, :3]
    return sum(rotation[..., :, j] * points[..., j, None] for j in range(3)) + pose[..., :3, 3]


def _sinc(t2):
    """sin(t) / t from t^2, exact to float32 precision for every t (Taylor series near 0)."""
    small = t2 < 1e-4
    t = jnp.sqrt(jnp.where(small, 1.0, t2))
    return jnp.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, jnp.sin(t) / t)


def _one_minus_cos_over_t2(t2):
    """(1 - cos t) / t^2 = sinc(t / 2)^2 / 2, free of the cancellation of 1 - cos t."""
    return 0.5 * _sinc(t2 / 4.0) ** 2


def so3_exp(rotvec: ArrayLike) -> jax.Array:
    """Rodrigues' formula: axis-angle (..., 3) radians -> rotation (..., 3, 3)."""
    rotvec = float_array("so3_exp rotvec", rotvec, (3,))
    theta2 = jnp.sum(rotvec * rotvec, axis=-1)
    a = _sinc(theta2)
    b = _one_minus_cos_over_t2(theta2)
    k = _skew(rotvec)
    eye = jnp.eye(3, dtype=jnp.float32)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def so3_log(rotation: ArrayLike) -> jax.Array:
    """Rotation (..., 3, 3) -> axis-angle (..., 3) radians, angle in [0, pi].

    Goes through the quaternion, which is well conditioned everywhere (including at pi).
    """
    q = matrix_to_quaternion(rotation)
    w = q[..., 0]
    v = q[..., 1:] * jnp.where(w < 0, -1.0, 1.0)[..., None]
    w = jnp.abs(w)
    n2 = jnp.sum(v * v, axis=-1)
    small = n2 < _SMALL**2
    n = jnp.sqrt(jnp.where(small, 1.0, n2))
    # angle = 2 atan2(|v|, w); rotvec = angle * v / |v|; near zero: 2 v / w.
    scale = jnp.where(small, 2.0 / w, 2.0 * jnp.arctan2(n, w) / n)
    return v * scale[..., None]


def quaternion_to_matrix(quaternion: ArrayLike) -> jax.Array:
    """Quaternion (..., 4) in (w, x, y, z) order (normalised here) -> rotation (..., 3, 3)."""
    q = float_array("quaternion_to_matrix quaternion", quaternion, (4,))
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quaternion(rotation: ArrayLike) -> jax.Array:
    """Rotation (..., 3, 3) -> unit quaternion (..., 4), (w, x, y, z), with w >= 0.

    Shepperd's method: of the four candidate formulas, the one with the largest
    denominator is selected, so no branch divides by a small number.
    """
    r = float_array("matrix_to_quaternion rotation", rotation, (3, 3))
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    trace = m00 + m11 + m22
    cands = jnp.stack(
        [
            jnp.stack(
                [1 + trace, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1
            ),
            jnp.stack(
                [
                    r[..., 2, 1] - r[..., 1, 2],
                    1 + m00 - m11 - m22,
                    r[..., 0, 1] + r[..., 1, 0],
                    r[..., 0, 2] + r[..., 2, 0],
                ],
                -1,
            ),
            jnp.stack(
                [
                    r[..., 0, 2] - r[..., 2, 0],
                    r[..., 0, 1] + r[..., 1, 0],
                    1 - m00 + m11 - m22,
                    r[..., 1, 2] + r[..., 2, 1],
                ],
                -1,
            ),
            jnp.stack(
                [
                    r[..., 1, 0] - r[..., 0, 1],
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 1, 2] + r[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        -2,
    )  # (..., 4 candidates, 4); candidate k has 4 q_k^2 at position k
    diag = jnp.stack([1 + trace, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = jnp.argmax(diag, axis=-1)
    q = jnp.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return q * jnp.where(q[..., :1] < 0, -1.0, 1.0)


def axis_rotation(axis: str, angle: ArrayLike) -> jax.Array:
    """Rotation (..., 3, 3) by ``angle`` (...) radians about the coordinate axis "X", "Y" or "Z"
    (right-handed: positive turns y toward z, z toward x, x toward y respectively)."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    o, i = jnp.zeros_like(angle), jnp.ones_like(angle)
    rows = {
        "X": [[i, o, o], [o, c, -s], [o, s, c]],
        "Y": [[c, o, s], [o, i, o], [-s, o, c]],
        "Z": [[c, -s, o], [s, c, o], [o, o, i]],
    }[axis]
    return jnp.stack([jnp.stack(row, -1) for row in rows], -2)


def _check_convention(convention: str):
    if (
        not isinstance(convention, str)
        or len(convention) != 3
        or any(a not in "XYZ" for a in convention.upper())
        or convention[0].upper() == convention[1].upper()
        or convention[1].upper() == convention[2].upper()
    ):
        raise ValueError(
            f"Euler convention must be three axes from 'XYZ' with no axis twice in a row, e.g. 'ZYX', got {convention!r}"
        )
    return convention.upper()


def euler_to_matrix(angles: ArrayLike, convention: str = "ZYX") -> jax.Array:
    """Euler angles (..., 3) radians -> rotation (..., 3, 3).

    ``R = R_{c[0]}(angles[0]) @ R_{c[1]}(angles[1]) @ R_{c[2]}(angles[2])`` for convention c,
    i.e. rotations about the moving (intrinsic) axes c[0], then c[1], then c[2]. "ZYX" is
    yaw-pitch-roll.
    """
    convention = _check_convention(convention)
    angles = float_array("euler_to_matrix angles", angles, (3,))
    return (
        axis_rotation(convention[0], angles[..., 0])
        @ axis_rotation(convention[1], angles[..., 1])
        @ axis_rotation(convention[2], angles[..., 2])
    )


def matrix_to_euler(rotation: ArrayLike, convention: str = "ZYX") -> jax.Array:
    """Rotation (..., 3, 3) -> Euler angles (..., 3) radians, the inverse of ``euler_to_matrix``.

    The middle angle lies in [-pi/2, pi/2] for Tait-Bryan conventions (three distinct axes) and
    in [0, pi] for proper Euler conventions (first axis == last axis). At gimbal lock the third
    angle is set to zero.
    """
    convention = _check_convention(convention)
    r = float_array("matrix_to_euler rotation", rotation, (3, 3))
    idx = {"X": 0, "Y": 1, "Z": 2}
    i, j, k = (idx[a] for a in convention)
    proper = i == k
    if proper:
        k = 3 - i - j
    # parity of the permutation (i, j, k): +1 if cyclic
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    # The middle angle comes from atan2 of its sine and cosine (each from well-conditioned
    # entries), not from arcsin / arccos of one entry near +/-1.
    if not proper:
        cos_middle = jnp.hypot(r[..., i, i], r[..., i, j])
        middle = jnp.arctan2(sign * r[..., i, k], cos_middle)
        a1 = jnp.arctan2(-sign * r[..., j, k], r[..., k, k])
        a3 = jnp.arctan2(-sign * r[..., i, j], r[..., i, i])
        locked = cos_middle < 1e-6
    else:
        sin_middle = jnp.hypot(r[..., i, j], r[..., i, k])
        middle = jnp.arctan2(sin_middle, r[..., i, i])
        a1 = jnp.arctan2(r[..., j, i], -sign * r[..., k, i])
        a3 = jnp.arctan2(r[..., i, j], sign * r[..., i, k])
        locked = sin_middle < 1e-6
    # At gimbal lock only a1 +/- a3 is defined: put it all in a1.
    a1_locked = jnp.arctan2(sign * r[..., k, j], r[..., j, j])
    a1 = jnp.where(locked, a1_locked, a1)
    a3 = jnp.where(locked, 0.0, a3)
    return jnp.stack([a1, middle, a3], -1)


def rotation_6d_to_matrix(r6: ArrayLike) -> jax.Array:
    """6D rotation (..., 6), the first two columns of R stacked, -> rotation (..., 3, 3).

    Gram-Schmidt on the two columns; the third is their cross product.
    """
    r6 = float_array("rotation_6d_to_matrix r6", r6, (6,))
    a, b = r6[..., :3], r6[..., 3:]
    c0 = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b - jnp.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    c2 = jnp.cross(c0, c1)
    return jnp.stack([c0, c1, c2], -1)


def matrix_to_rotation_6d(rotation: ArrayLike) -> jax.Array:
    """Rotation (..., 3, 3) -> 6D (..., 6): its first column, then its second."""
    r = float_array("matrix_to_rotation_6d rotation", rotation, (3, 3))
    return jnp.concatenate([r[..., :, 0], r[..., :, 1]], -1)


def _so3_left_jacobian_terms(theta2):
    """Coefficients (b, c) of V = I + b K + c K^2 with K = skew(omega), theta^2 = |omega|^2.

    c = (t - sin t) / t^3 cancels badly in float32 for small t, so below t = 0.5 it is its
    Taylor series (truncation error t^8 / 4e7 < 1e-9).
    """
    b = _one_minus_cos_over_t2(theta2)
    small = theta2 < 0.25
    t2 = jnp.where(small, 1.0, theta2)
    t = jnp.sqrt(t2)
    series = 1.0 / 6.0 - theta2 / 120.0 + theta2**2 / 5040.0 - theta2**3 / 362880.0
    c = jnp.where(small, series, (t - jnp.sin(t)) / (t2 * t))
    return b, c


def se3_exp(twist: ArrayLike) -> jax.Array:
    """se(3) twist (..., 6) = (rho mm, omega rad) -> pose (..., 4, 4).

    ``T = [[exp(omega^), V rho], [0, 1]]`` with V the left Jacobian of SO(3).
    """
    twist = float_array("se3_exp twist", twist, (6,))
    rho, omega = twist[..., :3], twist[..., 3:]
    k = _skew(omega)
    b, c = _so3_left_jacobian_terms(jnp.sum(omega * omega, axis=-1))
    v = jnp.eye(3, dtype=jnp.float32) + b[..., None, None] * k + c[..., None, None] * (k @ k)
    return make_pose(so3_exp(omega), jnp.einsum("...ij,...j->...i", v, rho))


def se3_log(pose: ArrayLike) -> jax.Array:
    """Pose (..., 4, 4) -> se(3) twist (..., 6) = (rho mm, omega rad), inverse of ``se3_exp``."""
    pose = float_array("se3_log pose", pose, (4, 4))
    omega = so3_log(pose[..., :3, :3])
    theta2 = jnp.sum(omega * omega, axis=-1)
    # V^-1 = I - K/2 + d K^2, d = (1 - (t/2) cot(t/2)) / t^2, a Taylor series below t = 0.5.
    small = theta2 < 0.25
    t2 = jnp.where(small, 1.0, theta2)
    half = 0.5 * jnp.sqrt(t2)
    series = 1.0 / 12.0 + theta2 / 720.0 + theta2**2 / 30240.0
    d = jnp.where(small, series, (1.0 - half * jnp.cos(half) / jnp.sin(half)) / t2)
    k = _skew(omega)
    v_inv = jnp.eye(3, dtype=jnp.float32) - 0.5 * k + d[..., None, None] * (k @ k)
    rho = jnp.einsum("...ij,...j->...i", v_inv, pose[..., :3, 3])
    return jnp.concatenate([rho, omega], -1)


def rotation_angle(rotation_a: ArrayLike, rotation_b: ArrayLike) -> jax.Array:
    """Geodesic angle (...,) radians between rotations (..., 3, 3), in [0, pi]."""
    rotation_a = float_array("rotation_angle rotation_a", rotation_a, (3, 3))
    rotation_b = float_array("rotation_angle rotation_b", rotation_b, (3, 3))
    q = matrix_to_quaternion(jnp.swapaxes(rotation_a, -1, -2) @ rotation_b)
    n2 = jnp.sum(q[..., 1:] ** 2, axis=-1)
    n = jnp.where(n2 > 0, jnp.sqrt(jnp.where(n2 > 0, n2, 1.0)), 0.0)  # finite gradient at 0
    return 2.0 * jnp.arctan2(n, jnp.abs(q[..., 0]))
