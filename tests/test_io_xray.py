"""X-ray DICOM in and out: geometry tags, the positioner angles' clinical meaning, round trips."""

import jax
import numpy as np
import pytest

import fluorojax as fj
from fluorojax.io import load_xray, positioner_angles, positioner_pose, save_xray

pydicom = pytest.importorskip("pydicom")


def _detector_direction(primary_deg, secondary_deg):
    """DICOM PS3.3 C.8.7.5: unit vector isocentre -> detector, RAS+ (0, 0: anterior)."""
    a, b = np.radians(primary_deg), np.radians(secondary_deg)
    return np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])


@pytest.mark.parametrize("angles", [(0.0, 0.0), (30.0, 20.0), (-45.0, -25.0), (90.0, 0.0), (170.0, 10.0)])
def test_positioner_pose_places_the_detector(angles):
    pose = np.asarray(positioner_pose(*angles, 700.0, isocenter=(1.0, 2.0, 3.0)), np.float64)
    d = _detector_direction(*angles)
    np.testing.assert_allclose(pose[:3, 2], d, atol=1e-6)  # the beam runs toward the detector
    np.testing.assert_allclose(pose[:3, 3], np.array([1.0, 2.0, 3.0]) - 700.0 * d, atol=1e-3)
    # head up: the image's top (-y, row 0) leans toward the patient's head
    assert -pose[2, 1] > 0
    np.testing.assert_allclose(positioner_angles(pose, (1.0, 2.0, 3.0)), (*angles, 700.0), atol=1e-3)


def test_lao_90_puts_the_patients_left_nearest_the_detector():
    """The drawn example: two equal balls, one in the patient's left, one in the right; at
    clinical LAO 90 the detector is on the left, so the left ball is less magnified."""
    shape, spacing = (64, 24, 24), 2.0
    centre = (np.asarray(shape) - 1) / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    left, right = centre + (-20, 0, 0), centre + (20, 0, 0)  # RAS: -x is the patient's left
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -centre * spacing
    camera = fj.Camera(48, 48, 1.0, 400.0)
    pose = positioner_pose(90.0, 0.0, 150.0)
    detector_centre = np.asarray(pose)[:3, :3] @ [0, 0, 400.0] + np.asarray(pose)[:3, 3]
    assert detector_centre[0] < -200  # the detector is at the patient's left
    # Both balls lie on the central ray; the one nearer the source casts the larger shadow.
    # Render each alone and compare the widths of their shadows.
    widths = []
    render = jax.jit(fj.render)  # both balls share one compilation
    for ball in (left, right):
        single = (np.linalg.norm(ijk - ball, axis=-1) < 4).astype(np.float32)
        image = np.asarray(render(fj.Volume(single, affine), camera, pose))
        widths.append(int((image[24] > 0.5).sum()))
    assert widths[0] < widths[1], widths  # left (near the detector) is smaller than right (near the source)


def test_round_trip_gives_back_image_camera_pose(tmp_path):
    camera = fj.Camera(24, 32, (0.6, 0.4), 1100.0, principal_point=(14.5, 13.0))
    iso = np.array([10.0, -20.0, 30.0])
    pose = np.asarray(positioner_pose(-35.0, 15.0, 720.0, iso))
    rng = np.random.default_rng(0)
    image = rng.uniform(-1.0, 7.0, size=camera.shape).astype(np.float32)
    path = save_xray(tmp_path / "drr.dcm", image, camera, pose, isocenter=iso)
    xray = load_xray(path, isocenter=iso)
    slope = (image.max() - image.min()) / 65535
    np.testing.assert_allclose(xray.image, image, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(np.asarray(xray.camera.pixel_size), [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(float(xray.camera.sdd), 1100.0)
    np.testing.assert_allclose(np.asarray(xray.camera.principal_point), [14.5, 13.0], atol=1e-4)
    np.testing.assert_allclose(xray.pose, pose, atol=1e-4)
    ds = pydicom.dcmread(path)  # the standard tags another tool would read
    assert ds.Modality == "DX" and float(ds.DistanceSourceToDetector) == 1100.0
    np.testing.assert_allclose(
        [float(ds.PositionerPrimaryAngle), float(ds.PositionerSecondaryAngle)], [-35.0, 15.0], atol=1e-4
    )
    np.testing.assert_allclose(float(ds.DistanceSourceToPatient), 720.0, atol=1e-3)
    np.testing.assert_allclose([float(v) for v in ds.ImagerPixelSpacing], [0.4, 0.6])
    # stored as a radiograph is displayed: columns reversed from the source's view
    stored = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(stored[:, ::-1], image, atol=slope / 2 + 1e-6)


def test_ap_drr_is_stored_with_the_patients_right_on_the_viewers_right(tmp_path):
    """fluorojax AP (source anterior) is clinical primary angle 180 (detector posterior); seen from
    the detector the patient's right is on the viewer's right, so PatientOrientation is R\\F."""
    pose = fj.carm_pose(0.0, 0.0, 500.0)
    primary, secondary, _ = positioner_angles(pose)
    assert abs(primary) == pytest.approx(180.0) and secondary == pytest.approx(0.0, abs=1e-4)
    camera = fj.Camera(8, 8, 1.0, 1000.0)
    ds = pydicom.dcmread(save_xray(tmp_path / "ap.dcm", np.zeros((8, 8)), camera, pose))
    assert list(ds.PatientOrientation) == ["R", "F"]


def test_pixel_spacing_only_is_scaled_by_the_magnification(tmp_path):
    camera = fj.Camera(8, 8, 0.5, 1000.0)
    path = save_xray(tmp_path / "x.dcm", np.ones((8, 8)), camera, positioner_pose(0.0, 0.0, 800.0))
    ds = pydicom.dcmread(path)
    del ds.ImagerPixelSpacing, ds.EstimatedRadiographicMagnificationFactor
    ds.save_as(path)
    xray = load_xray(path)
    assert xray.tags["magnification"] == pytest.approx(1000.0 / 800.0)
    np.testing.assert_allclose(np.asarray(xray.camera.pixel_size), [0.5, 0.5], rtol=1e-6)


def test_multi_frame_needs_a_frame_index(tmp_path):
    camera = fj.Camera(6, 5, 1.0, 1000.0)
    path = save_xray(tmp_path / "x.dcm", np.zeros((6, 5)), camera)
    ds = pydicom.dcmread(path)
    frames = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5)
    ds.NumberOfFrames, ds.PixelData = 3, frames.tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.save_as(path)
    with pytest.raises(ValueError, match="3 frames"):
        load_xray(path)
    np.testing.assert_array_equal(load_xray(path, frame=2).image, frames[2][:, ::-1])


def test_plain_image_with_user_geometry(tmp_path):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", image)
    camera = fj.Camera(3, 4, 1.0, 1000.0)
    xray = load_xray(tmp_path / "x.npy", camera=camera)
    np.testing.assert_array_equal(xray.image, image)
    assert xray.pose is None
    with pytest.raises(ValueError, match="no geometry"):
        load_xray(tmp_path / "x.npy")


def test_rolled_pose_and_off_ray_isocentre_refused(tmp_path):
    pose = np.asarray(positioner_pose(10.0, 5.0, 600.0), np.float64)
    roll = np.eye(4)
    roll[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]
    with pytest.raises(ValueError, match="rolled"):
        positioner_angles(pose @ roll)
    with pytest.raises(ValueError, match="principal ray"):
        positioner_angles(pose, isocenter=(50.0, 0.0, 0.0))
