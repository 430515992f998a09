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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fluorojax import _validate
from fluorojax._pytree import PyTree, field, is_concrete
from fluorojax.transforms import apply_pose, axis_rotation, invert_pose, make_pose

DEFAULT_DEPTH = 2000.0
"""mm, the default beam length of an ``OrthographicCamera``: rays from 0 to 2 m along the beam."""


def _height(value: Any) -> int:
    return _validate.positive_int("Camera height (pixels)", value)


def _width(value: Any) -> int:
    return _validate.positive_int("Camera width (pixels)", value)


def _pixel_size(value: ArrayLike) -> jax.Array:
    """(2,) float32 mm from a scalar or a (1,) or (2,) array (column spacing, row spacing)."""
    size = _validate.array("Camera pixel_size (mm)", value, jnp.float32)
    if size.shape not in ((), (1,), (2,)):
        raise ValueError(f"Camera pixel_size must be a positive scalar or (2,) in mm, got shape {size.shape}")
    return jnp.broadcast_to(size, (2,))


def _principal_point(value: ArrayLike | None) -> jax.Array | None:
    """(2,) float32 pixels (u, v), or None for the default (filled by ``__post_init__``)."""
    if value is None:
        return None
    point = _validate.array("Camera principal_point (u, v) pixels", value, jnp.float32)
    if point.shape != (2,):
        raise ValueError(f"Camera principal_point (u, v) pixels must have shape (2,), got shape {point.shape}")
    return point


def _scalar_mm(name: str) -> Callable[[ArrayLike], jax.Array]:
    """A converter to a float32 scalar in mm, errors naming ``name``."""

    def convert(value: ArrayLike) -> jax.Array:
        length = _validate.array(name, value, jnp.float32)
        if length.shape != ():
            raise ValueError(f"{name} must be a positive, finite number (mm), got shape {length.shape}")
        return length

    return convert


_Detector = TypeVar("_Detector", bound="_FlatDetector")


class _FlatDetector(PyTree):
    """What both cameras share: height x width pixels of ``pixel_size`` (2,) mm, centred on the
    camera's z axis at ``principal_point`` (2,) px (declared by each camera, after its own
    fields, so that the constructors keep their argument order)."""

    height: int = field(static=True, converter=_height)
    width: int = field(static=True, converter=_width)
    pixel_size: jax.Array = field(converter=_pixel_size)

    if TYPE_CHECKING:  # a field of each camera (declared there, after its own fields) and its projection
        principal_point: jax.Array

        def projection_matrix(self, pose: ArrayLike) -> jax.Array: ...

    def __post_init__(self) -> None:
        """The default principal point: the detector centre (width / 2, height / 2)."""
        if self.principal_point is None:
            self.principal_point = jnp.array([self.width / 2.0, self.height / 2.0], jnp.float32)

    def __check_values__(self) -> None:
        """Host-side checks of concrete values: positive pixel sizes and a finite principal point
        (ValueError naming the argument); each camera adds its beam extent."""
        kind = type(self).__name__
        size = np.asarray(self.pixel_size)
        if not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise ValueError(f"{kind} pixel_size must be a positive scalar or (2,) in mm, got {size.tolist()}")
        _validate.finite_array(f"{kind} principal_point (u, v) pixels", self.principal_point, shape=(2,))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)

    def pixel_centres(self) -> jax.Array:
        """(H, W, 2) continuous pixel coordinates (u, v) = (c + 0.5, r + 0.5) of the pixel centres."""
        cols = jnp.arange(self.width, dtype=jnp.float32) + 0.5
        rows = jnp.arange(self.height, dtype=jnp.float32) + 0.5
        return jnp.stack(jnp.meshgrid(cols, rows), axis=-1)  # (H, W), row-major

    def _intrinsic_matrix(self, focal: jax.Array) -> jax.Array:
        """K (3, 3) = ``[[focal/px, 0, u0], [0, focal/py, v0], [0, 0, 1]]``, focal in mm."""
        fx = focal / self.pixel_size[0]
        fy = focal / self.pixel_size[1]
        u0, v0 = self.principal_point[0], self.principal_point[1]
        zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
        return jnp.stack([jnp.stack([fx, zero, u0]), jnp.stack([zero, fy, v0]), jnp.stack([zero, zero, one])])

    def _plane_points(self, z: ArrayLike) -> jax.Array:
        """Pixel centres placed on the camera-frame plane ``z`` (mm): (H, W, 3) mm."""
        uv = self.pixel_centres()
        xx = (uv[..., 0] - self.principal_point[0]) * self.pixel_size[0]
        yy = (uv[..., 1] - self.principal_point[1]) * self.pixel_size[1]
        return jnp.stack([xx, yy, jnp.broadcast_to(z, xx.shape)], axis=-1)

    def project(self, pose: ArrayLike, points: ArrayLike) -> jax.Array:
        """World points (..., 3) mm -> continuous pixel coordinates (..., 2) as (u, v) = (col, row)."""
        p = self.projection_matrix(pose)
        homog = jnp.einsum("...ij,...j->...i", p[..., :3], points) + p[..., 3]
        return homog[..., :2] / homog[..., 2:3]

    def binned(self: _Detector, factor: int) -> _Detector:
        """The same detector read out in ``factor`` x ``factor`` bins: ``factor`` times fewer and
        larger pixels (``factor`` must divide the height and the width), same beam geometry."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"binning factor must be a positive integer, got {factor!r}")
        if self.height % factor or self.width % factor:
            raise ValueError(f"binning factor {factor} must divide the image shape {self.shape}")
        return self.replace(
            height=self.height // factor,
            width=self.width // factor,
            pixel_size=self.pixel_size * factor,
            principal_point=self.principal_point / factor,
        )


class Camera(_FlatDetector):
    """Intrinsics of a cone-beam X-ray imager with a flat detector.

    Attributes:
      height, width: image size in pixels (static).
      pixel_size: (2,) mm, (column spacing, row spacing); a scalar is broadcast.
      sdd: source-to-detector distance in mm (the focal length).
      principal_point: (2,) pixels, (u, v) = (column, row) where the principal ray meets the
        detector; default the detector centre (width / 2, height / 2).

    Kinds and shapes are checked on every construction (TypeError / ValueError naming the
    argument), traced values included. Concrete values are also checked (``__check_values__``:
    positive, finite) whatever their type; traced ones are not: a non-positive pixel size or sdd
    built inside ``jax.jit`` gives inf / NaN rays. ``replace`` and ``binned`` derive a camera
    without reading its values.
    """

    sdd: jax.Array = field(converter=_scalar_mm("Camera sdd (source-to-detector distance)"))
    principal_point: jax.Array = field(default=None, converter=_principal_point)

    def __check_values__(self) -> None:
        super().__check_values__()
        _validate.positive_number("Camera sdd (source-to-detector distance)", self.sdd, unit="mm")

    @property
    def intrinsics(self) -> jax.Array:
        """K (3, 3): ``[[sdd/px, 0, u0], [0, sdd/py, v0], [0, 0, 1]]``."""
        return self._intrinsic_matrix(self.sdd)

    def detector_points(self) -> jax.Array:
        """Pixel centres on the detector plane in the camera frame: (H, W, 3) mm."""
        return self._plane_points(self.sdd)

    def rays(self, pose: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Rays of every pixel for ``pose`` (..., 4, 4) world_from_camera.

        Returns (sources, targets), each (..., H, W, 3) world mm: the X-ray source and the
        pixel centre on the detector.
        """
        pose_array = jnp.asarray(pose, jnp.float32)
        pose_b = pose_array.reshape(pose_array.shape[:-2] + (1, 1, 4, 4))
        targets = apply_pose(pose_b, self.detector_points())
        sources = jnp.broadcast_to(pose_b[..., :3, 3], targets.shape)
        return sources, targets

    def ray_directions(self, pose: ArrayLike) -> jax.Array:
        """Unit directions (..., H, W, 3) in world axes from the source through every pixel
        centre, for ``pose`` (..., 4, 4) world_from_camera.

        Computed one component plane at a time: XLA:CPU runs a norm over a trailing axis of
        size 3 more than 10x slower than the same arithmetic on (H, W) planes (512 x 512: 8.6 vs 0.5 ms).
        """
        pose_b = jnp.asarray(pose, jnp.float32)[..., None, None, :, :]
        points = self.detector_points()  # the camera-frame rays from the source at the origin
        d = [
            pose_b[..., i, 0] * points[..., 0] + pose_b[..., i, 1] * points[..., 1] + pose_b[..., i, 2] * points[..., 2]
            for i in range(3)
        ]
        length = jnp.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        return jnp.stack([c / length for c in d], axis=-1)

    def projection_matrix(self, pose: ArrayLike) -> jax.Array:
        """P (..., 3, 4) = K @ inv(pose)[:3] for pose (..., 4, 4) world_from_camera."""
        return self.intrinsics @ invert_pose(jnp.asarray(pose, jnp.float32))[..., :3, :]


_DROP_Z = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], np.float32)
"""Camera-frame (x, y, z, 1) -> (x, y, 1): the parallel projection along z."""


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

    Checked as in ``Camera``: kinds and shapes always, values when concrete.
    """

    principal_point: jax.Array = field(default=None, converter=_principal_point)
    depth: jax.Array = field(default=DEFAULT_DEPTH, converter=_scalar_mm("OrthographicCamera depth (beam length)"))

    def __check_values__(self) -> None:
        super().__check_values__()
        _validate.positive_number("OrthographicCamera depth (beam length)", self.depth, unit="mm")

    @property
    def intrinsics(self) -> jax.Array:
        """K (3, 3): ``[[1/px, 0, u0], [0, 1/py, v0], [0, 0, 1]]``, camera-frame (x, y, 1) mm to
        homogeneous pixels."""
        return self._intrinsic_matrix(jnp.ones_like(self.depth))

    def detector_points(self) -> jax.Array:
        """Pixel centres on the detector plane z = depth in the camera frame: (H, W, 3) mm."""
        return self._plane_points(self.depth)

    def rays(self, pose: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Rays of every pixel for ``pose`` (..., 4, 4) world_from_camera.

        Returns (sources, targets), each (..., H, W, 3) world mm: the pixel centre on the plane
        z = 0 and on the detector plane z = depth.
        """
        pose_b = jnp.asarray(pose, jnp.float32)[..., None, None, :, :]
        return apply_pose(pose_b, self._plane_points(0.0)), apply_pose(pose_b, self.detector_points())

    def ray_directions(self, pose: ArrayLike) -> jax.Array:
        """Unit directions (..., H, W, 3) in world axes of every pixel's ray (the pose's z axis),
        for ``pose`` (..., 4, 4) world_from_camera."""
        z = jnp.asarray(pose, jnp.float32)[..., :3, 2]
        z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        return jnp.broadcast_to(z[..., None, None, :], z.shape[:-1] + self.shape + (3,))

    def projection_matrix(self, pose: ArrayLike) -> jax.Array:
        """P (..., 3, 4) = K @ D @ inv(pose), D dropping z: an affine camera, last row (0, 0, 0, 1),
        for pose (..., 4, 4) world_from_camera."""
        return self.intrinsics @ _DROP_Z @ invert_pose(jnp.asarray(pose, jnp.float32))


CAMERA_TYPES = (Camera, OrthographicCamera)
"""The imagers every renderer accepts."""


def look_at(
    source: ArrayLike | Sequence[float],
    target: ArrayLike | Sequence[float],
    up: ArrayLike | Sequence[float] = (0.0, 0.0, 1.0),
) -> jax.Array:
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


def carm_rotation(lao: ArrayLike, cra: ArrayLike) -> jax.Array:
    """(..., 3, 3) rotation ``Rz(lao) Rx(cra)`` of a C-arm at ``lao``, ``cra`` (...) radians, in
    the angles' dtype: it turns the AP source direction (0, 1, 0) into the view's (its column 1,
    in ``carm_pose`` and ``fluorojax.scene.views.direction``)."""
    return axis_rotation("Z", lao) @ axis_rotation("X", cra)


def carm_pose(
    lao_deg: ArrayLike,
    cra_deg: ArrayLike,
    source_to_isocenter: ArrayLike,
    isocenter: ArrayLike | Sequence[float] = (0.0, 0.0, 0.0),
) -> jax.Array:
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
