"""Scene specs, device and view sampling, tool placement and tool attenuation in the DRR."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

import fluorojax as fj
from fluorojax import physics
from fluorojax.scene.devices import sample_device
from fluorojax.scene.generate import read_structures
from fluorojax.scene.placement import ToolPlacement, build_tool, sample_tools
from fluorojax.scene.spec import DeviceRanges, SceneSpec, ToolConfig, ViewConfig, load_spec, save_spec
from fluorojax.scene.views import anatomy_from_labels, angle_deg, carm_angles, direction, sample_view
from fluorojax.simulate.scene import interval_union, render_scene, stack_cameras, tissue_along, tool_pass, tool_union
from fluorojax.tools import box

# ------------------------------------------------------------------------------------------
# spec


def test_spec_round_trips_through_json_and_yaml(tmp_path):
    spec = SceneSpec(images_per_ct=7, seed=5).replace(
        device={"image_sizes": [[32, 48]], "photons": None}, views={"targets": ["heart"]}, render={"mode": "mono"}
    )
    assert SceneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for name in ("spec.json", "spec.yaml"):
        assert load_spec(save_spec(spec, tmp_path / name)) == spec
    (tmp_path / "partial.yaml").write_text("images_per_ct: 3\ndevice:\n  kvps: [80]\n")
    partial = load_spec(tmp_path / "partial.yaml")
    assert partial.images_per_ct == 3 and partial.device.kvps == (80,) and partial.device.sdd_mm == (900.0, 1200.0)


def test_spec_files_are_data_only(tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "evil.yaml").write_text(f"images_per_ct: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError, match="safe YAML"):
        load_spec(tmp_path / "evil.yaml")
    assert not marker.exists()
    (tmp_path / "spec.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ValueError, match=".json, .yaml"):
        load_spec(tmp_path / "spec.pkl")
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"imagez_per_ct": 3}, r"unknown keys \['imagez_per_ct'\] in scene spec;"),
        ({"device": {"sdd": [1, 2]}}, r"unknown keys \['sdd'\] in scene spec section 'device'"),
        ({"device": [900, 1200]}, "section 'device' must be a mapping"),
        ([1, 2], "scene spec must be a mapping"),
        ({"device": {"sdd_mm": [1200, 900]}}, "sdd_mm"),
        ({"device": {"isocenter_fraction": [0.5, 1.2]}}, "below 1"),
        ({"views": {"near_deg": -1}}, "near_deg"),
        ({"tools": {"materials": ["unobtainium"]}}, "tools.materials"),
        ({"tools": {"max_hits": 3}}, "even"),
        ({"render": {"annotation": "polygon"}}, "render.annotation"),
        ({"images_per_ct": 0}, "images_per_ct"),
    ],
)
def test_spec_rejects_bad_values(data, message):
    with pytest.raises(ValueError, match=message):
        SceneSpec.from_dict(data)


# ------------------------------------------------------------------------------------------
# devices


def test_devices_follow_their_ranges():
    ranges = DeviceRanges(image_sizes=((32, 32), (64, 48)))
    devices = [sample_device(jax.random.key(i), ranges) for i in range(400)]
    sdd = np.array([d.sdd for d in devices])
    assert stats.kstest((sdd - 900) / 300, "uniform").pvalue > 1e-3
    width_mm = np.array([d.pixel_size * d.width for d in devices])
    assert stats.kstest((width_mm - 300) / 100, "uniform").pvalue > 1e-3
    fraction = np.array([d.source_to_isocenter / d.sdd for d in devices])
    assert fraction.min() >= 0.65 and fraction.max() <= 0.75
    log_photons = np.log10([d.photons for d in devices])
    assert stats.kstest((log_photons - 3) / 2, "uniform").pvalue > 1e-3
    assert {d.kvp for d in devices} == {60, 80, 90, 100, 120}
    assert {(d.height, d.width) for d in devices} == {(32, 32), (64, 48)}
    assert sample_device(jax.random.key(7), ranges) == devices[7]
    camera = devices[0].camera()
    assert camera.shape == (devices[0].height, devices[0].width) and float(camera.sdd) == pytest.approx(devices[0].sdd)


# ------------------------------------------------------------------------------------------
# anatomy and views


def _synthetic_anatomy(rotation, pelvis=False):
    """Vertebrae stacked along voxel axis k (L1 lowest), kidneys on either side along i."""
    labels = np.zeros((40, 30, 60), np.int32)
    names = {1: "vertebrae_L1", 2: "vertebrae_T12", 3: "vertebrae_T11", 4: "kidney_right", 5: "kidney_left"}
    for n, k in ((1, 12), (2, 24), (3, 36)):
        labels[17:23, 12:18, k : k + 8] = n
    labels[30:36, 12:18, 14:24] = 4  # +i is the patient's right
    labels[4:10, 12:18, 14:24] = 5
    if pelvis:
        labels[16:24, 12:18, 2:8] = 6
        names[6] = "sacrum"
    affine = np.eye(4)
    affine[:3, :3] = rotation * 2.0
    affine[:3, 3] = [-40.0, 10.0, 5.0]
    return anatomy_from_labels(labels, affine, names), affine


def test_frame_from_spine_and_paired_organs():
    rotation = np.asarray(
        fj.transforms.se3_exp(np.array([0.0, 0.0, 0.0, 0.2, -0.1, 0.3], np.float32))[:3, :3], np.float64
    )
    anatomy, _ = _synthetic_anatomy(rotation)
    np.testing.assert_allclose(anatomy.frame, rotation, atol=1e-5)
    assert [v.name for v in anatomy.standard_views][:6] == [
        "ap",
        "pa",
        "lateral_left",
        "lateral_right",
        "lao45",
        "rao45",
    ]
    assert "inlet" not in {v.name for v in anatomy.standard_views}
    pelvic, _ = _synthetic_anatomy(rotation, pelvis=True)
    views = {v.name: v for v in pelvic.standard_views}
    assert views["inlet"].target == "sacrum" and views["outlet"].cra_deg == -40.0
    assert views["ap_T12"].target == "vertebrae_T12" and views["lateral_T12"].lao_deg == 90.0


@pytest.fixture(scope="module")
def anatomy():
    volume = fj.load_example()
    names = read_structures(Path(fj.example_paths()[0]).with_name("example_structures.csv"))
    return anatomy_from_labels(np.asarray(volume.labels), np.asarray(volume.affine), names)


def test_example_anatomy(anatomy):
    frame = anatomy.frame
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-9)
    assert np.linalg.det(frame) == pytest.approx(1.0)
    assert angle_deg(frame[:, 2], [0, 0, 1]) < 10 and angle_deg(frame[:, 0], [1, 0, 0]) < 10  # supine RAS scan
    assert anatomy.structures["vertebrae_L3"].cutoff == "I" and anatomy.structures["vertebrae_C5"].cutoff == "S"
    assert anatomy.structures["heart"].cutoff is None
    assert "ap_T7" in {v.name for v in anatomy.standard_views} and "ap_L3" not in {
        v.name for v in anatomy.standard_views
    }


def test_carm_angles_match_carm_pose():
    for lao, cra in ((0, 0), (30, -20), (-70, 35), (120, 10)):
        d = direction(lao, cra)
        pose = np.asarray(fj.carm_pose(lao, cra, 500.0, (0.0, 0.0, 0.0)))
        np.testing.assert_allclose(pose[:3, 3] / 500.0, d, atol=1e-5)
        np.testing.assert_allclose(carm_angles(d), (lao, cra), atol=1e-9)


def test_direction_is_carm_pose_source_direction_on_a_grid():
    lao, cra = np.meshgrid(np.arange(-180.0, 181.0, 15.0), np.arange(-85.0, 86.0, 8.5), indexing="ij")
    d = direction(lao, cra)
    assert d.dtype == np.float64 and d.shape == lao.shape + (3,)
    a, c = np.deg2rad(lao), np.deg2rad(cra)  # closed form of Rz(lao) Rx(cra) (0, 1, 0), float64
    np.testing.assert_allclose(d, np.stack([-np.sin(a) * np.cos(c), np.cos(a) * np.cos(c), np.sin(c)], -1), atol=1e-14)
    pose = np.asarray(fj.carm_pose(lao.astype(np.float32), cra.astype(np.float32), 1.0))
    np.testing.assert_allclose(pose[..., :3, 3], d, atol=1e-6)


def test_near_standard_views_stay_within_tolerance(anatomy):
    config = ViewConfig(near_standard_fraction=1.0, near_deg=2.0)
    standards = {v.name: v for v in anatomy.standard_views}
    for i in range(300):
        view = sample_view(jax.random.key(i), anatomy, config, 700.0)
        assert view.kind == "near_standard" and view.name == view.standard
        assert angle_deg(view.direction, standards[view.name].direction) <= 2.0 + 1e-9
        assert view.angle_deg <= 2.0 + 1e-9
        if standards[view.name].target is not None:
            assert view.target == standards[view.name].target


def test_random_views_fill_the_cone_uniformly(anatomy):
    config = ViewConfig(near_standard_fraction=0.0, random_deg=75.0)
    views = [sample_view(jax.random.key(i), anatomy, config, 700.0) for i in range(1500)]
    ap = direction(0.0, 0.0)
    theta = np.deg2rad(angle_deg(np.array([v.direction for v in views]), ap))
    half = np.deg2rad(75.0)
    uniform_cap_cdf = lambda t: (1 - np.cos(t)) / (1 - np.cos(half))  # noqa: E731
    assert theta.max() <= half + 1e-9
    assert stats.kstest(theta, uniform_cap_cdf).pvalue > 1e-3
    d = np.array([v.direction for v in views])
    azimuth = np.arctan2(d[:, 2], d[:, 0])  # around the AP axis (0, 1, 0)
    assert stats.kstest((azimuth + np.pi) / (2 * np.pi), "uniform").pvalue > 1e-3
    assert all(v.name == "random" and v.angle_deg <= np.rad2deg(t) + 1e-9 for v, t in zip(views, theta))


def test_view_pose_centres_the_target(anatomy):
    camera = fj.Camera(64, 48, 0.8, 1000.0)
    for i in range(20):
        view = sample_view(jax.random.key(100 + i), anatomy, ViewConfig(), 700.0)
        pose = view.pose(anatomy.frame)
        uv = np.asarray(camera.project(pose, np.asarray(view.isocenter, np.float32)))
        np.testing.assert_allclose(uv, [24.0, 32.0], atol=1e-2)
        np.testing.assert_allclose(np.linalg.norm(pose[:3, 3] - np.asarray(view.isocenter)), 700.0, rtol=1e-5)
        source_dir = (pose[:3, 3] - np.asarray(view.isocenter)) / 700.0
        np.testing.assert_allclose(source_dir, anatomy.frame @ np.asarray(view.direction), atol=1e-5)
        image_up = -pose[:3, 1]  # row 0 is the top of the image
        superior = anatomy.frame[:, 2] - np.dot(anatomy.frame[:, 2], source_dir) * source_dir
        assert angle_deg(image_up, superior) <= 10.0 + 1e-3


# ------------------------------------------------------------------------------------------
# tools


def test_tools_sit_in_bones(anatomy):
    config = ToolConfig(probability=1.0, max_count=3)
    placements = [p for i in range(30) for p in sample_tools(jax.random.key(i), anatomy, config)]
    assert len(placements) >= 30 and {p.kind for p in placements} == set(config.kinds)
    for p in placements:
        assert np.linalg.norm(p.axis) == pytest.approx(1.0)
        points = anatomy.points[p.bone]
        assert np.min(np.linalg.norm(points - np.asarray(p.tip), axis=1)) < 12.0  # tip in or at the bone
        if p.bone.startswith("vertebrae_"):
            assert np.dot(p.axis, anatomy.frame[:, 1]) < -0.8  # shaft leaves posteriorly
        assert ToolPlacement.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    tool = build_tool(placements[0])
    vertices = np.asarray(tool.mesh.vertices)
    along = (vertices - np.asarray(placements[0].tip)) @ np.asarray(placements[0].axis)
    assert along.min() == pytest.approx(0.0, abs=1e-3) and along.max() >= placements[0].length_mm - 1e-3
    assert tool.material == placements[0].material and tool.mesh.to_trimesh().is_watertight


# ------------------------------------------------------------------------------------------
# tools in the DRR

NIST_IRON_60KEV = 1.205  # cm^2/g, NIST XCOM mass attenuation of iron at 60 keV


def _slab_scene(camera="pinhole"):
    """A 80 mm cube of 10 mm voxels: soft tissue (1 g/cm^3) in the slab |z| < 20 mm, air elsewhere,
    seen along z from 600 mm by a pinhole (source at z = -600 mm) or an orthographic camera
    (plane z = 0 there), and each pixel ray's cosine to the z axis (H, W)."""
    data = np.zeros((8, 8, 8, 3), np.float32)
    data[:, :, 2:6, 1] = 1.0
    labels = np.zeros((8, 8, 8), np.int32)
    labels[:, :, 2:6] = 1
    affine = np.diag([10.0, 10.0, 10.0, 1.0])
    affine[:3, 3] = -35.0
    pose = np.asarray(fj.look_at((0.0, 0.0, -600.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
    if camera == "orthographic":  # parallel rays along z: no obliquity
        return fj.Volume(data, affine, labels), fj.OrthographicCamera(6, 6, 8.0, depth=1000.0), pose, np.ones((6, 6))
    pinhole = fj.Camera(6, 6, 2.0, 1000.0)
    cos = 1000.0 / np.linalg.norm(np.asarray(pinhole.detector_points(), np.float64), axis=-1)
    return fj.Volume(data, affine, labels), pinhole, pose, cos


def _mono_and_poly():
    """60 keV alone, on a 16-bin grid so that it shares a batch with the 80 kVp spectrum; the
    tests below render the same two views (B = 2, E = 16) so that they share compilations."""
    poly = physics.spectrum(80, 16)
    return (poly[0].at[0].set(60.0), jax.numpy.zeros(16).at[0].set(1.0)), poly


@pytest.mark.parametrize("kind", ["pinhole", "orthographic"])
def test_steel_bar_attenuates_by_beer_lambert(kind):
    volume, camera, pose, cos = _slab_scene(kind)
    thickness = 5.0
    bar = box((60.0, 60.0, thickness), material="iron", density=7.874)  # rays cross it along z
    kwargs = dict(materials=physics.DEFAULT_MATERIALS, tool_materials=("iron",), max_hits=4)
    mono, poly = _mono_and_poly()
    out = render_scene(
        volume, (1,), [camera, camera], np.stack([pose, pose]), [mono, poly], [bar], replace_tissue=False, **kwargs
    )
    travel = thickness / cos
    np.testing.assert_allclose(np.asarray(out.tool_travel[0, 0]), travel, rtol=1e-5)
    soft = float(physics.mass_attenuation("soft_tissue", 60.0))
    iron = float(physics.mass_attenuation("iron", 60.0))
    assert iron == pytest.approx(NIST_IRON_60KEV, rel=1e-2)
    tissue = 40.0 / cos
    expected = np.exp(-(iron * 7.874 * travel + soft * 1.0 * tissue) / 10.0)
    np.testing.assert_allclose(np.asarray(out.image[0]), expected, rtol=1e-4)
    np.testing.assert_allclose(
        -np.log(np.asarray(out.image[0])) - soft * tissue / 10.0, NIST_IRON_60KEV * 7.874 * travel / 10.0, rtol=1e-2
    )
    np.testing.assert_allclose(np.asarray(out.label_travel[0, 0]), tissue, rtol=1e-4)
    # depths from the source (the plane z = 0 of an orthographic camera) at z = -600 mm
    np.testing.assert_allclose(np.asarray(out.label_entry[:, 0]), np.broadcast_to(580.0 / cos, (2, 6, 6)), rtol=1e-5)
    hits = np.stack([597.5 / cos, 602.5 / cos], -1)  # the bar's faces z = -2.5 and 2.5 mm
    np.testing.assert_allclose(
        np.asarray(out.tool_hits[0, :, :, :, :2]), np.broadcast_to(hits, (2, 6, 6, 2)), rtol=1e-5
    )

    # the tool displaces tissue: only 40 - 5 mm of soft tissue remain on each ray
    out = render_scene(
        volume, (1,), [camera, camera], np.stack([pose, pose]), [mono, poly], [bar], replace_tissue=True, **kwargs
    )
    np.testing.assert_allclose(
        np.asarray(out.image[0]), np.exp(-(iron * 7.874 * travel + soft * (tissue - travel)) / 10.0), rtol=1e-4
    )
    energy, weights = (np.asarray(x, np.float64) for x in poly)
    mu_iron = np.asarray(physics.mass_attenuation("iron", poly[0]), np.float64)
    mu_soft = np.asarray(physics.mass_attenuation("soft_tissue", poly[0]), np.float64)
    depth = (mu_iron[:, None, None] * 7.874 * travel + mu_soft[:, None, None] * (tissue - travel)) / 10.0
    expected_poly = np.sum((weights * energy)[:, None, None] * np.exp(-depth), axis=0) / np.sum(weights * energy)
    np.testing.assert_allclose(np.asarray(out.image[1]), expected_poly, rtol=1e-4)


def test_a_batch_takes_cameras_of_one_type():
    camera = fj.OrthographicCamera(6, 6, 8.0, depth=1000.0)
    with pytest.raises(ValueError, match="one type"):
        stack_cameras([camera, fj.Camera(6, 6, 8.0, 1000.0)])
    with pytest.raises(TypeError, match="Camera"):
        stack_cameras([camera, "camera"])


def _union_length(entry, exit_):
    """Total length of the union of the valid intervals of one ray, merged in float64."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(
        (float(a), float(b)) for a, b in zip(entry, exit_) if np.isfinite(a) and np.isfinite(b) and b > a
    ):
        total += max(b, reach) - max(a, reach)
        reach = max(reach, b)
    return total


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_interval_union_matches_a_float64_merge(jit):
    rng = np.random.default_rng(0)
    entry = rng.uniform(0.0, 100.0, (500, 6)).astype(np.float32)
    exit_ = (entry + rng.uniform(-5.0, 30.0, entry.shape)).astype(np.float32)  # some empty (exit <= entry)
    entry[rng.random(entry.shape) < 0.2] = np.inf
    exit_[rng.random(entry.shape) < 0.1] = np.nan
    entry[:3] = [[10, 10, 20, 40, 50, np.inf], [0, 5, 5, 5, 60, 70], [1, 2, 3, 4, 5, 6]]  # equal, nested, touching
    exit_[:3] = [[30, 30, 25, 50, 55, np.inf], [100, 10, 10, 8, 65, 70], [2, 3, 4, 5, 6, 7]]
    start, stop = (
        np.asarray(x, np.float64) for x in (jax.jit(interval_union) if jit else interval_union)(entry, exit_)
    )
    piece = stop > start
    lengths = np.zeros_like(start)
    lengths[piece] = stop[piece] - start[piece]
    np.testing.assert_allclose(
        lengths.sum(-1), [_union_length(a, b) for a, b in zip(entry, exit_)], rtol=1e-6, atol=1e-4
    )
    for lo, hi, keep in zip(start, stop, piece):  # disjoint pieces
        order = np.argsort(lo[keep])
        assert np.all(lo[keep][order][1:] >= hi[keep][order][:-1])


@pytest.mark.parametrize("centres", [(-3.0, 2.0), (-10.0, 10.0)], ids=["overlapping", "disjoint"])
def test_tools_remove_the_tissue_of_their_union_once(centres):
    """Two 10 mm steel bars across the slab: the tissue removed is density x the union of their
    intervals (15 mm per cos when they overlap by 5 mm, the sum of both when apart)."""
    volume, camera, pose, cos = _slab_scene()
    bars = [
        box((60.0, 60.0, 10.0), material="iron", density=7.874).place(
            np.asarray(fj.transforms.make_pose(np.eye(3), (0.0, 0.0, z)))
        )
        for z in centres
    ]
    # two copies of the view (B = 2), as in the steel-bar test: the same compiled passes
    cams, poses = stack_cameras([camera, camera]), np.stack([np.asarray(pose, np.float32)] * 2)
    hits = np.stack([np.asarray(tool_pass(bar.mesh, cams, poses, 4)[0]) for bar in bars])  # (T, 2, H, W, K)
    removed = np.asarray(tissue_along(volume, cams, poses, *tool_union(hits)))[0]
    z_pairs = [(z - 5.0, z + 5.0) for z in centres]
    union = _union_length(*zip(*z_pairs)) / cos  # along z, then along each ray
    assert _union_length(*zip(*z_pairs)) == (15.0 if centres[0] == -3.0 else 20.0)
    np.testing.assert_allclose(removed[..., 1], 1.0 * union, rtol=1e-5)  # soft tissue, 1 g/cm^3
    np.testing.assert_array_equal(removed[..., [0, 2]], 0.0)

    mono, poly = _mono_and_poly()
    out = render_scene(
        volume,
        (1,),
        [camera, camera],
        poses,
        [mono, poly],
        bars,
        materials=physics.DEFAULT_MATERIALS,
        tool_materials=("iron",),
        replace_tissue=True,
        max_hits=4,
    )
    soft = float(physics.mass_attenuation("soft_tissue", 60.0))
    iron = float(physics.mass_attenuation("iron", 60.0))
    expected = np.exp(-(iron * 7.874 * 20.0 / cos + soft * (40.0 / cos - union)) / 10.0)
    np.testing.assert_allclose(np.asarray(out.image[0]), expected, rtol=1e-4)
