"""fluorojax.interop against the real packages: OpenCV's projectPoints, DiffDRR and nanodrr renders
(peers venv, in a subprocess), RTK's geometry and Joseph forward projector, DeepDRR's published
formulas (it needs CUDA), and 3D Slicer's landmark formats."""

import os
import subprocess

import numpy as np
import pytest

import fluorojax as fj
from fluorojax import interop

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_PYTHON = os.environ.get("FLUOROJAX_PEERS_PYTHON", "/work/main/.venv-peers/bin/python")


def _camera_pose():
    camera = fj.Camera(24, 32, (0.6, 0.45), 1100.0, principal_point=(14.5, 13.0))
    pose = np.asarray(fj.carm_pose(25.0, -12.0, 600.0, (3.0, -4.0, 5.0)), np.float64)
    return camera, pose


def _points(n=20, seed=0):
    return np.random.default_rng(seed).uniform(-60, 60, size=(n, 3)) + np.array([3.0, -4.0, 5.0])


def test_opencv_project_points_matches():
    cv2 = pytest.importorskip("cv2")
    camera, pose = _camera_pose()
    k, rvec, tvec = interop.to_opencv(camera, pose)
    projected, _ = cv2.projectPoints(_points(), rvec, tvec, k, np.zeros(5))
    ours = np.asarray(camera.project(pose, _points()), np.float64)
    np.testing.assert_allclose(projected[:, 0] + 0.5, ours, atol=2e-3)  # OpenCV: pixel centre at integers
    back_camera, back_pose = interop.from_opencv(k, rvec, tvec, camera.height, camera.width, 0.6)
    np.testing.assert_allclose(back_pose, pose, atol=1e-4)
    np.testing.assert_allclose(np.asarray(back_camera.intrinsics), np.asarray(camera.intrinsics), rtol=1e-5)


@pytest.mark.parametrize("convert", ["diffdrr", "nanodrr", "rtk", "opencv"])
def test_round_trips(convert):
    camera, pose = _camera_pose()
    if convert == "diffdrr":
        kwargs, e = interop.to_diffdrr(camera, pose, (1.0, 2.0, 3.0), orientation="PA")
        back = interop.from_diffdrr(e, (1.0, 2.0, 3.0), orientation="PA", **kwargs)
    elif convert == "nanodrr":
        kwargs, rt_inv = interop.to_nanodrr(camera, pose)
        back = interop.from_nanodrr(rt_inv, **kwargs)
    elif convert == "rtk":
        back = interop.from_rtk(**interop.to_rtk(camera, pose))
    else:
        back = interop.from_opencv(*interop.to_opencv(camera, pose), camera.height, camera.width, (0.6, 0.45))
    np.testing.assert_allclose(back[1], pose, atol=1e-4)
    np.testing.assert_allclose(np.asarray(back[0].intrinsics), np.asarray(camera.intrinsics), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# DeepDRR: its published formulas (deepdrr/device/mobile_carm.py, geo/camera_intrinsic_transform.py)


def _deepdrr_reference(alpha, beta, gamma, isocenter, d, h, sdd, w, hgt, p):
    """camera3d_from_world and K, written from DeepDRR's source with scipy (world = device)."""
    from scipy.spatial.transform import Rotation

    def frame(rotation=None, translation=None):
        out = np.eye(4)
        if rotation is not None:
            out[:3, :3] = rotation
        if translation is not None:
            out[:3, 3] = translation
        return out

    device_from_arm = frame(Rotation.from_euler("xy", [alpha, beta]).as_matrix(), isocenter)
    camera3d_from_arm = frame(Rotation.from_euler("z", 90, degrees=True).as_matrix()) @ frame(translation=[0, -h, d])
    camera3d_from_device = (
        frame(Rotation.from_euler("z", gamma).as_matrix()) @ camera3d_from_arm @ np.linalg.inv(device_from_arm)
    )
    k = np.array([[sdd / p, 0, w / 2], [0, sdd / p, hgt / 2], [0, 0, 1]])
    return camera3d_from_device, k


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.4, -0.3, 0.2), (-0.6, 1.1, -0.5)])
def test_deepdrr_mobile_carm_formulas(angles):
    pytest.importorskip("scipy")
    alpha, beta, gamma = angles
    iso, d, h = np.array([10.0, -5.0, 30.0]), 530.0, 20.0
    camera, pose = interop.from_deepdrr(
        alpha,
        beta,
        iso,
        gamma,
        source_to_detector_distance=1020.0,
        source_to_isocenter_vertical_distance=d,
        source_to_isocenter_horizontal_offset=h,
        sensor_height=48,
        sensor_width=64,
        pixel_size=0.4,
    )
    extrinsic, k = _deepdrr_reference(alpha, beta, gamma, iso, d, h, 1020.0, 64, 48, 0.4)
    np.testing.assert_allclose(np.linalg.inv(pose), extrinsic, atol=1e-9)
    np.testing.assert_allclose(np.asarray(camera.intrinsics), k, rtol=1e-6)
    # DeepDRR's projector samples pixel (u, v) at (u + 0.5, v + 0.5): so do we
    points = _points()
    homog = (k @ (extrinsic[:3, :3] @ points.T + extrinsic[:3, 3:])).T
    np.testing.assert_allclose(np.asarray(camera.project(pose, points)), homog[:, :2] / homog[:, 2:], rtol=1e-4)
    back = interop.to_deepdrr(
        camera, pose, source_to_isocenter_vertical_distance=d, source_to_isocenter_horizontal_offset=h
    )
    np.testing.assert_allclose([back["alpha"], back["beta"], back["gamma"]], angles, atol=1e-9)
    np.testing.assert_allclose(back["isocenter"], iso, atol=1e-9)


# ------------------------------------------------------------------------------------------
# Renders in the peers: DiffDRR, nanodrr (subprocess) and RTK


def _phantom():
    """Four small dense balls in an obliquely oriented 24^3 grid of 2.5 mm voxels; raw values."""
    shape = (24, 24, 24)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    data = np.zeros(shape, np.float32)
    for centre in [(5, 5, 17), (18, 6, 6), (12, 18, 18), (5, 17, 5)]:
        data += np.exp(-np.sum((ijk - centre) ** 2, axis=-1) / (2 * 1.5**2)).astype(np.float32)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([2.5, 2.5, 2.5])
    affine[:3, 3] = (-20.0, 15.0, 40.0)
    return fj.Volume(data, affine)


def _view(volume):
    camera = fj.Camera(64, 64, 3.0, 900.0, principal_point=(30.0, 35.5))
    pose = np.asarray(
        fj.carm_pose(25.0, -10.0, 450.0, np.asarray(volume.center) + np.array([4.0, 0.0, -3.0])), np.float64
    )
    return camera, pose


def _feature_offsets(image, reference):
    """Per ball: the offset (px) between intensity centroids in the regions where the reference is bright."""
    from scipy import ndimage

    regions, n = ndimage.label(reference > 0.2 * reference.max())
    assert n == 4, f"expected the 4 balls as separate features, found {n}"
    ours = np.array(ndimage.center_of_mass(reference, regions, range(1, n + 1)))
    theirs = np.array(ndimage.center_of_mass(image, regions, range(1, n + 1)))
    return np.linalg.norm(ours - theirs, axis=1)


@pytest.fixture(scope="module")
def peer_images(tmp_path_factory):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(
            f"the peers' venv (torch, diffdrr, nanodrr) is absent at {PEERS_PYTHON}: bash scripts/setup_peers_venv.sh"
        )
    volume = _phantom()
    camera, pose = _view(volume)
    dd_kwargs, dd_pose = interop.to_diffdrr(camera, pose, np.asarray(volume.center, np.float64))
    nano_kwargs, rt_inv = interop.to_nanodrr(camera, pose)
    folder = tmp_path_factory.mktemp("peers")
    np.savez(
        folder / "in.npz",
        data=np.asarray(volume.data),
        affine=np.asarray(volume.affine, np.float64),
        diffdrr_pose=dd_pose,
        nanodrr_rt_inv=rt_inv,
        **{f"diffdrr_kw_{k}": v for k, v in dd_kwargs.items()},
        **{f"nanodrr_kw_{k}": v for k, v in nano_kwargs.items()},
    )
    run = subprocess.run(
        [PEERS_PYTHON, os.path.join(HERE, "peers_render.py"), str(folder / "in.npz"), str(folder / "out.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return volume, camera, pose, dict(np.load(folder / "out.npz"))


@pytest.mark.slow  # the peers' subprocess (torch import, 3 renders) and 2 compiles: ~25 s
@pytest.mark.parametrize(
    "peer, method", [("diffdrr_siddon", "siddon"), ("diffdrr_trilinear", "trilinear"), ("nanodrr", "trilinear")]
)
def test_peer_renders_match(peer_images, peer, method):
    volume, camera, pose, images = peer_images
    ours = np.asarray(fj.render(volume, camera, pose, method), np.float64)
    theirs = images[peer].astype(np.float64)
    assert theirs.shape == ours.shape
    offsets = _feature_offsets(theirs, ours)
    assert offsets.max() < 0.05, offsets  # the same view, feature for feature (measured: < 1e-4 px)
    # the same renderer family on both sides: the same line integrals (measured: 8e-5 of the maximum)
    np.testing.assert_allclose(theirs, ours, atol=1e-3 * ours.max())


@pytest.mark.slow  # importing itk takes ~30 s
def test_rtk_joseph_projector_matches():
    itk = pytest.importorskip("itk")
    rtk = itk.RTK
    volume = _phantom()
    camera, pose = _view(volume)
    params = interop.to_rtk(camera, pose)
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    geometry.AddProjection(
        *(
            params[k]
            for k in (
                "sid",
                "sdd",
                "gantry_angle",
                "proj_offset_x",
                "proj_offset_y",
                "out_of_plane_angle",
                "in_plane_angle",
                "source_offset_x",
                "source_offset_y",
            )
        )
    )
    # RTK's own reading of the geometry: the source and a pixel centre where fluorojax puts them
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(np.asarray(geometry.GetSourcePosition(0))[:3], lps @ pose[:3, 3], atol=1e-3)
    p2f = itk.array_from_matrix(geometry.GetProjectionCoordinatesToFixedSystemMatrix(0))
    r, c = 10, 50
    u = params["origin"][0] + params["spacing"][0] * (camera.width - 1 - c)
    v = params["origin"][1] + params["spacing"][1] * r
    ours = np.asarray(camera.rays(pose)[1], np.float64)[r, c]
    np.testing.assert_allclose((p2f @ [u, v, 0.0, 1.0])[:3], lps @ ours, atol=1e-3)

    # Joseph forward projection of the phantom (ITK image in LPS)
    data = np.asarray(volume.data)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(volume.affine, np.float64)
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    image = itk.image_from_array(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(affine_lps[:3, 3].tolist())
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(affine_lps[:3, :3] / spacing)))
    projections = itk.image_from_array(np.zeros((1, camera.height, camera.width), np.float32))
    projections.SetSpacing([*params["spacing"], 1.0])
    projections.SetOrigin([*params["origin"], 0.0])
    projector = rtk.JosephForwardProjectionImageFilter[type(projections), type(image)].New()
    projector.SetInput(0, projections)
    projector.SetInput(1, image)
    projector.SetGeometry(geometry)
    projector.Update()
    theirs = itk.array_from_image(projector.GetOutput())[0][:, ::-1].astype(np.float64)
    ours = np.asarray(fj.render(volume, camera, pose, "trilinear"), np.float64)
    offsets = _feature_offsets(theirs, ours)
    assert offsets.max() < 0.05, offsets  # measured: < 0.001 px
    np.testing.assert_allclose(theirs, ours, atol=1e-2 * ours.max())  # measured: 0.3 % (Joseph vs trilinear sampling)


# ------------------------------------------------------------------------------------------
# 3D Slicer landmarks


def test_slicer_fcsv_lps_read_as_ras(tmp_path):
    text = (
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "1,10.5,-20,30,0,0,0,1,1,1,0,apex,,\n2,-1,2,-3,0,0,0,1,1,1,0,carina,,\n"
    )
    (tmp_path / "p.fcsv").write_text(text)
    labels, points = interop.read_landmarks(tmp_path / "p.fcsv")
    assert labels == ["apex", "carina"]
    np.testing.assert_allclose(points, [[-10.5, 20.0, 30.0], [1.0, -2.0, -3.0]])


def test_slicer_markups_json_lps_read_as_ras(tmp_path):
    import json

    document = {
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "controlPoints": [{"id": "1", "label": "T1", "position": [1.0, 2.0, 3.0]}],
            }
        ]
    }
    (tmp_path / "p.mrk.json").write_text(json.dumps(document))
    labels, points = interop.read_landmarks(tmp_path / "p.mrk.json")
    assert labels == ["T1"]
    np.testing.assert_allclose(points, [[-1.0, -2.0, 3.0]])


@pytest.mark.parametrize("suffix", [".fcsv", ".mrk.json"])
def test_slicer_landmarks_round_trip(tmp_path, suffix):
    points = _points(5)
    path = interop.write_landmarks(tmp_path / f"p{suffix}", points, [f"L{i}" for i in range(5)])
    labels, back = interop.read_landmarks(path)
    assert labels == [f"L{i}" for i in range(5)]
    np.testing.assert_allclose(back, points, atol=1e-12)


def test_bad_inputs_raise():
    camera, pose = _camera_pose()
    with pytest.raises(ValueError, match="rigid"):
        interop.to_nanodrr(camera, pose * 2)
    with pytest.raises(ValueError, match="mirrors"):
        interop.from_diffdrr(pose, (0, 0, 0), 1000.0, 8, 8, 1.0, reverse_x_axis=False)
    with pytest.raises(ValueError, match="mirrors"):
        interop.from_diffdrr(pose, (0, 0, 0), 1000.0, 8, 8, 1.0, orientation="PA", reverse_x_axis=True)
    with pytest.raises(ValueError, match="centred principal point"):
        interop.to_deepdrr(camera, pose)
