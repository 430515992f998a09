"""X-ray cameras with a flat detector: intrinsics, rays, projection matrices and standard poses.

Two imagers share one set of conventions (see the README):
  * camera frame: +z along the beam toward the detector, +x along increasing image column, +y
    along increasing image row; every ray starts on the plane z = 0 and ends on the detector;
  * pixel (row r, col c) covers [c, c + 1) x [r, r + 1) in continuous pixel coordinates and its
    ray passes through the centre (c + 0.5, r + 0.5);
  * a pose is ``world_from_camera`` (4, 4), world in mm (NIfTI RAS+);
  * ``projection_matrix(pose)`` (3, 4) maps homogeneous world points to homogeneous pixel
    coordinates and ``project`` divides by the last one.

``Camera`` is a pinhole (cone-beam) imager: every ray starts at the X-ray source, the camera
origin, and ends on the detector plane z = sdd; ``P = K @ inv(pose)[:3]``. ``OrthographicCamera``
is a parallel-beam imager: pixel (r, c)'s ray runs along +z from its point on the plane z = 0 to
the detector plane z = depth, and the projection drops z (an affine camera). Both live here
because they share the detector, its validation and every convention; the renderers use only
their common methods (``rays``, ``ray_directions``, ``projection_matrix``, ``project``,
``pixel_centres``, ``shape``, ``binned``), so they render either.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax import _validate
from fluorojax._pytree import is_concrete, pytree_dataclass, static_field
from fluorojax.transforms import apply_pose, axis_rotation, invert_pose, make_pose

DEFAULT_DEPTH = 2000.0
"""mm, the default beam length of an ``OrthographicCamera``: rays from 0 to 2 m along the beam."""


class _FlatDetector:
    """What both cameras share: height x width pixels of ``pixel_size`` (2,) mm, centred on the
    camera's z axis at ``principal_point`` (2,) px."""

    def _init_detector(self, height, width, pixel_size, principal_point, extent_name, extent, extent_text):
        """Validate (when concrete) and set the detector fields and the beam extent ``extent_name``."""
        kind = type(self).__name__
        height = _validate.positive_int(f"{kind} height (pixels)", height)
        width = _validate.positive_int(f"{kind} width (pixels)", width)
        if is_concrete(pixel_size, extent, principal_point):
            ps = _validate.real_array(f"{kind} pixel_size (mm)", pixel_size)
            if ps.shape not in ((), (1,), (2,)) or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
                raise ValueError(f"{kind} pixel_size must be a positive scalar or (2,) in mm, got {pixel_size!r}")
            _validate.positive_number(f"{kind} {extent_name} ({extent_text})", extent, unit="mm")
            if principal_point is not None:
                _validate.finite_array(f"{kind} principal_point (u, v) pixels", principal_point, shape=(2,))
        if principal_point is None:
            principal_point = (width / 2.0, height / 2.0)
        object.__setattr__(self, "height", int(height))
        object.__setattr__(self, "width", int(width))
        object.__setattr__(self, "pixel_size", jnp.broadcast_to(jnp.asarray(pixel_size, jnp.float32), (2,)))
        object.__setattr__(self, extent_name, jnp.asarray(extent, jnp.float32))
        object.__setattr__(self, "principal_point", jnp.asarray(principal_point, jnp.float32))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    def pixel_centres(self):
        """(H, W, 2) continuous pixel coordinates (u, v) = (c + 0.5, r + 0.5) of the pixel centres."""
        cols = jnp.arange(self.width, dtype=jnp.float32) + 0.5
        rows = jnp.arange(self.height, dtype=jnp.float32) + 0.5
        return jnp.stack(jnp.meshgrid(cols, rows), axis=-1)  # (H, W), row-major

    def _intrinsic_matrix(self, focal):
        """K (3, 3) = ``[[focal/px, 0, u0], [0, focal/py, v0], [0, 0, 1]]``, focal in mm."""
        fx = focal / self.pixel_size[0]
        fy = focal / self.pixel_size[1]
        u0, v0 = self.principal_point[0], self.principal_point[1]
        zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
        return jnp.stack([jnp.stack([fx, zero, u0]), jnp.stack([zero, fy, v0]), jnp.stack([zero, zero, one])])

    def _plane_points(self, z):
        """Pixel centres placed on the camera-frame plane ``z`` (mm): (H, W, 3) mm."""
        uv = self.pixel_centres()
        xx = (uv[..., 0] - self.principal_point[0]) * self.pixel_size[0]
        yy = (uv[..., 1] - self.principal_point[1]) * self.pixel_size[1]
        return jnp.stack([xx, yy, jnp.broadcast_to(z, xx.shape)], axis=-1)

    def project(self, pose, points):
        """World points (..., 3) mm -> continuous pixel coordinates (..., 2) as (u, v) = (col, row)."""
        p = self.projection_matrix(pose)
        homog = jnp.einsum("...ij,...j->...i", p[..., :3], points) + p[..., 3]
        return homog[..., :2] / homog[..., 2:3]

    def binned(self, factor: int):
        """The same detector read out in ``factor`` x ``factor`` bins: ``factor`` times fewer and
        larger pixels (``factor`` must divide the height and the width), same beam geometry."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"binning factor must be a positive integer, got {factor!r}")
        if self.height % factor or self.width % factor:
            raise ValueError(f"binning factor {factor} must divide the image shape {self.shape}")
        return dataclasses.replace(
            self,
            height=self.height // factor,
            width=self.width // factor,
            pixel_size=self.pixel_size * factor,
            principal_point=self.principal_point / factor,
        )


@pytree_dataclass
class Camera(_FlatDetector):
    """Intrinsics of a cone-beam X-ray imager with a flat detector.

    Attributes:
      height, width: image size in pixels (static).
      pixel_size: (2,) mm, (column spacing, row spacing); a scalar is broadcast.
      sdd: source-to-detector distance in mm (the focal length).
      principal_point: (2,) pixels, (u, v) = (column, row) where the principal ray meets the
        detector; default the detector centre (width / 2, height / 2).

    Concrete values are checked whatever their type (Python, NumPy or JAX; ValueError naming
    the argument). Traced values (a Camera built inside ``jax.jit``) are not: a non-positive
    pixel size or sdd there gives inf / NaN rays.
    """

    pixel_size: jnp.ndarray
    sdd: jnp.ndarray
    principal_point: jnp.ndarray
    height: int = static_field()
    width: int = static_field()

    def __init__(self, height, width, pixel_size, sdd, principal_point=None):
        self._init_detector(height, width, pixel_size, principal_point, "sdd", sdd, "source-to-detector distance")

    @property
    def intrinsics(self):
        """K (3, 3): ``[[sdd/px, 0, u0], [0, sdd/py, v0], [0, 0, 1]]``."""
        return self._intrinsic_matrix(self.sdd)

    def detector_points(self):
        """Pixel centres on the detector plane in the camera frame: (H, W, 3) mm."""
        return self._plane_points(self.sdd)

    def rays(self, pose):
        """Rays of every pixel for ``pose`` (..., 4, 4) world_from_camera.

        Returns (sources, targets), each (..., H, W, 3) world mm: the X-ray source and the
        pixel centre on the detector.
        """
        pose = jnp.asarray(pose, jnp.float32)
        batch = pose.shape[:-2]
        pose_b = pose.reshape(batch + (1, 1, 4, 4))
        targets = apply_pose(pose_b, self.detector_points())
        sources = jnp.broadcast_to(pose_b[..., :3, 3], targets.shape)
        return sources, targets

    def ray_directions(self, pose):
        """Unit directions (..., H, W, 3) in world axes from the source through every pixel
        centre, for ``pose`` (..., 4, 4) world_from_camera.

        Computed one component plane at a time: XLA:CPU runs a norm over a trailing axis of
        size 3 more than 10x slower than the same arithmetic on (H, W) planes (512 x 512: 8.6 vs 0.5 ms).
        """
        pose = jnp.asarray(pose, jnp.float32)[..., None, None, :, :]
        points = self.detector_points()  # the camera-frame rays from the source at the origin
        d = [sum(pose[..., i, j] * points[..., j] for j in range(3)) for i in range(3)]
        length = jnp.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        return jnp.stack([c / length for c in d], axis=-1)

    def projection_matrix(self, pose):
        """P (..., 3, 4) = K @ inv(pose)[:3] for pose (..., 4, 4) world_from_camera."""
        return self.intrinsics @ invert_pose(jnp.asarray(pose, jnp.float32))[..., :3, :]


_DROP_Z = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], np.float32)
"""Camera-frame (x, y, z, 1) -> (x, y, 1): the parallel projection along z."""


@pytree_dataclass
class OrthographicCamera(_FlatDetector):
    """Intrinsics of a parallel-beam X-ray imager with a flat detector.

    Every pixel's ray runs along the camera's +z: pixel (r, c)'s ray starts at its centre's
    (x, y) on the plane z = 0 of the camera frame (the beam's entrance plane, where the pose's
    origin lies) and ends on the detector plane z = ``depth``. Only what lies between the two
    planes is imaged, so place the pose (e.g. ``carm_pose(lao, cra, d, isocenter)``) with the
    anatomy within ``[0, depth]`` along the beam: with the default 2000 mm and d = 1000 mm,
    everything within 1 m of the isocentre along the beam. Moving the pose along the beam does
    not change the image as long as the anatomy stays between the planes (no magnification);
    depths along rays (label entry / exit, mesh hits) are measured from the plane z = 0.

    Attributes:
      height, width: image size in pixels (static).
      pixel_size: (2,) mm, (column spacing, row spacing); a scalar is broadcast. With no
        magnification this is also the pixel's size at the anatomy.
      principal_point: (2,) pixels, (u, v) = (column, row) of the camera's z axis; default the
        detector centre (width / 2, height / 2).
      depth: mm, the beam's length from the plane z = 0 to the detector (default
        ``DEFAULT_DEPTH``, 2000 mm).

    Concrete values are checked as in ``Camera``; traced ones are not.
    """

    pixel_size: jnp.ndarray
    depth: jnp.ndarray
    principal_point: jnp.ndarray
    height: int = static_field()
    width: int = static_field()

    def __init__(self, height, width, pixel_size, principal_point=None, depth=DEFAULT_DEPTH):
        self._init_detector(height, width, pixel_size, principal_point, "depth", depth, "beam length")

    @property
    def intrinsics(self):
        """K (3, 3): ``[[1/px, 0, u0], [0, 1/py, v0], [0, 0, 1]]``, camera-frame (x, y, 1) mm to
        homogeneous pixels."""
        return self._intrinsic_matrix(jnp.ones_like(self.depth))

    def detector_points(self):
        """Pixel centres on the detector plane z = depth in the camera frame: (H, W, 3) mm."""
        return self._plane_points(self.depth)

    def rays(self, pose):
        """Rays of every pixel for ``pose`` (..., 4, 4) world_from_camera.

        Returns (sources, targets), each (..., H, W, 3) world mm: the pixel centre on the plane
        z = 0 and on the detector plane z = depth.
        """
        pose_b = jnp.asarray(pose, jnp.float32)[..., None, None, :, :]
        return apply_pose(pose_b, self._plane_points(0.0)), apply_pose(pose_b, self.detector_points())

    def ray_directions(self, pose):
        """Unit directions (..., H, W, 3) in world axes of every pixel's ray (the pose's z axis),
        for ``pose`` (..., 4, 4) world_from_camera."""
        z = jnp.asarray(pose, jnp.float32)[..., :3, 2]
        z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        return jnp.broadcast_to(z[..., None, None, :], z.shape[:-1] + self.shape + (3,))

    def projection_matrix(self, pose):
        """P (..., 3, 4) = K @ D @ inv(pose), D dropping z: an affine camera, last row (0, 0, 0, 1),
        for pose (..., 4, 4) world_from_camera."""
        return self.intrinsics @ _DROP_Z @ invert_pose(jnp.asarray(pose, jnp.float32))


CAMERA_TYPES = (Camera, OrthographicCamera)
"""The imagers every renderer accepts."""


def look_at(source, target, up=(0.0, 0.0, 1.0)):
    """Pose (4, 4) world_from_camera of a source at ``source`` looking at ``target`` (world mm).

    ``up`` (3,) is the world direction that appears at the top of the image (row 0); it must
    not be parallel to the viewing direction.
    """
    if is_concrete(source, target, up):
        for name, value in (("source", source), ("target", target), ("up", up)):
            _validate.finite_array(f"look_at {name} (world mm)", value, shape=(3,))
    source = jnp.asarray(source, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    up = jnp.asarray(up, jnp.float32)
    if is_concrete(source, target, up):
        view = np.asarray(target, np.float64) - np.asarray(source, np.float64)
        if np.linalg.norm(view) == 0:
            raise ValueError(f"look_at: source and target coincide at {np.asarray(source).tolist()}")
        if np.linalg.norm(np.cross(view, np.asarray(up, np.float64))) < 1e-6 * np.linalg.norm(view) * np.linalg.norm(
            up
        ):
            raise ValueError(f"look_at: up {np.asarray(up).tolist()} is parallel to the view direction {view.tolist()}")
    z = target - source
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    down = -(up - jnp.sum(up * z, axis=-1, keepdims=True) * z)
    y = down / jnp.linalg.norm(down, axis=-1, keepdims=True)
    x = jnp.cross(y, z)
    return make_pose(jnp.stack([x, y, z], axis=-1), source)


# Camera axes of the AP view in RAS+: the source is anterior and looks posterior (z = -A),
# the image's top is superior (y = -S) and its columns run toward the patient's left (x = -R),
# so the patient's right appears on the image's left as in a radiograph.
_AP_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]], np.float32)


def carm_rotation(lao: jax.Array, cra: jax.Array) -> jax.Array:
    """(..., 3, 3) rotation ``Rz(lao) Rx(cra)`` of a C-arm at ``lao``, ``cra`` (...) radians, in
    the angles' dtype: it turns the AP source direction (0, 1, 0) into the view's (its column 1,
    in ``carm_pose`` and ``fluorojax.scene.views.direction``)."""
    return axis_rotation("Z", lao) @ axis_rotation("X", cra)


def carm_pose(lao_deg, cra_deg, source_to_isocenter, isocenter=(0.0, 0.0, 0.0)):
    """Pose (..., 4, 4) world_from_camera of a C-arm from its two angles, world = RAS+ mm.

    At (0, 0) the view is AP: the source lies ``source_to_isocenter`` mm anterior of the
    ``isocenter`` (3,) and the beam runs anterior -> posterior, superior at the top of the
    image and the patient's right on its left.

    * ``lao_deg``: rotation about the patient's superior axis; positive (LAO) moves the source
      toward the patient's left, negative is RAO. LAO 90 is a left lateral view (beam left ->
      right).
    * ``cra_deg``: tilt of the source toward the head (cranial, positive) or the feet
      (caudal, negative), applied before the LAO/RAO rotation.

    The source sits at ``isocenter + source_to_isocenter * Rz(lao) Rx(cra) A``, A = (0, 1, 0).
    Angles may be batched arrays of equal shape. Concrete arguments are checked (finite
    numbers, positive distance) whatever their type; traced ones are not, and a NaN there gives
    a NaN pose, which the renderers refuse when it is concrete.
    """
    if is_concrete(lao_deg, cra_deg, source_to_isocenter, isocenter):
        _validate.finite_array("carm_pose lao_deg", lao_deg)
        _validate.finite_array("carm_pose cra_deg", cra_deg)
        _validate.positive_array("carm_pose source_to_isocenter", source_to_isocenter, unit="mm")
        if _validate.finite_array("carm_pose isocenter", isocenter).shape[-1:] != (3,):
            raise ValueError(f"carm_pose isocenter must be (..., 3) world mm, got shape {np.shape(isocenter)}")
    lao = jnp.deg2rad(jnp.asarray(lao_deg, jnp.float32))
    cra = jnp.deg2rad(jnp.asarray(cra_deg, jnp.float32))
    sid = jnp.asarray(source_to_isocenter, jnp.float32)
    r_carm = carm_rotation(lao, cra)
    rotation = r_carm @ _AP_ROTATION
    source = jnp.asarray(isocenter, jnp.float32) + sid[..., None] * r_carm[..., :, 1]
    return make_pose(rotation, source)
