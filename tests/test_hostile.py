"""Hostile and careless input (issue 18): every case fails with a clear error of the right type,
or gives the right numbers; nothing is read outside a dataset's root; no two runs mix.

Each test names the kind of input it stands for; the examples are the ones found by trying
about 200 hostile inputs against the API and the command line.
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluorojax as fj
from fluorojax import _validate
from fluorojax.cli import main
from fluorojax.fluoroseg import (
    Annotation,
    FluoroSegDataset,
    FluoroSegWriter,
    UnsafePathError,
)
from fluorojax.physics import detector_noise, poisson_noise
from fluorojax.physics.noise import POISSON_LIMIT
from fluorojax.scene import CaseSource, SceneSpec, example_case, generate
from fluorojax.scene.run_record import RUN_FILE, claim_output, run_record
from fluorojax.tools import kwire

LIVER = 5


# ------------------------------------------------------------------------------------------
# 1. the reader never opens a file outside the dataset root


def _dataset(root: Path) -> Path:
    """A one-image FluoroSeg dataset written by the writer: case ``c``, image 0 (8 x 8)."""
    writer = FluoroSegWriter(root)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 3:5] = True
    writer.write_image(
        "c",
        0,
        np.full((8, 8), 0.5, np.float32),
        [Annotation(LIVER, mask=mask)],
        {"focal_length": 1000.0, "pixel_size": 1.0},
    )
    writer.write_case("c")
    writer.write_splits(train=["c"], val=[])
    return root


def _set_file_name(root: Path, name: str) -> None:
    case = json.loads((root / "c.json").read_text())
    case["images"][0]["file_name"] = name
    (root / "c.json").write_text(json.dumps(case))


def test_reader_reads_the_dataset_it_refuses_to_leave(tmp_path):
    root = _dataset(tmp_path / "data")
    sample = FluoroSegDataset(root, image_size=None, categories="full")[0]
    np.testing.assert_array_equal(sample["image"], np.full((8, 8), 0.5, np.float32))
    assert sample["bboxes"].tolist() == [[3.0, 2.0, 2.0, 4.0]]


def test_image_through_a_symlinked_folder_is_refused(tmp_path):
    """Kind: a file_name that passes through a symbolic link inside the root (link/secret.tiff)."""
    root = _dataset(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.tiff").write_bytes((root / "c" / "0000000000.tiff").read_bytes())
    os.symlink(elsewhere, root / "c" / "link")
    _set_file_name(root, "link/secret.tiff")
    with pytest.raises(UnsafePathError, match="symbolic link .* outside the dataset root"):
        FluoroSegDataset(root)


def test_symlinked_image_annotation_split_and_case_files_are_refused(tmp_path):
    """Kind: any file the dataset names (image, annotation, split, case) that is itself a link out."""
    root = _dataset(tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("0000000000.tiff", "0000000000.json"):
        target = outside / name
        target.write_bytes((root / "c" / name).read_bytes())
        (root / "c" / name).unlink()
        os.symlink(target, root / "c" / name)
        with pytest.raises(UnsafePathError, match=f"{name}.*outside the dataset root"):
            FluoroSegDataset(root, on_error="skip")[0]
        (root / "c" / name).unlink()
        os.replace(target, root / "c" / name)
    (outside / "train.txt").write_text("c.json\n")
    (root / "train.txt").unlink()
    os.symlink(outside / "train.txt", root / "train.txt")
    with pytest.raises(UnsafePathError, match="train.txt.*outside the dataset root"):
        FluoroSegDataset(root)
    (root / "train.txt").unlink()
    (root / "val.txt").unlink()
    os.replace(root / "c.json", outside / "c.json")
    os.symlink(outside / "c.json", root / "c.json")
    with pytest.raises(UnsafePathError, match="c.json.*outside the dataset root"):
        FluoroSegDataset(root, split="val", on_error="skip")


def test_a_link_swapped_in_after_indexing_is_refused_at_read_time(tmp_path):
    root = _dataset(tmp_path / "data")
    dataset = FluoroSegDataset(root)
    secret = tmp_path / "secret.tiff"
    os.replace(root / "c" / "0000000000.tiff", secret)
    os.symlink(secret, root / "c" / "0000000000.tiff")
    with pytest.raises(
        UnsafePathError, match="image file: refusing .*0000000000.tiff.*secret.tiff.*outside the dataset root"
    ):
        dataset[0]


def test_symlinks_inside_the_root_are_followed(tmp_path):
    """A link that stays inside the root is fine: only leaving the root is refused."""
    root = _dataset(tmp_path / "data")
    os.replace(root / "c" / "0000000000.tiff", root / "c" / "real.tiff")
    os.symlink(root / "c" / "real.tiff", root / "c" / "0000000000.tiff")
    assert FluoroSegDataset(root, image_size=None)[0]["image"].shape == (8, 8)


# ------------------------------------------------------------------------------------------
# 6. malformed metadata is an error, never an empty result


@pytest.mark.parametrize(
    "images, words",
    [
        ({"file_name": "0000000000.tiff"}, "'images' is an object"),
        ("0000000000.tiff", "'images' is a string"),
        (None, "'images' is null"),
        ("missing", "no 'images' key"),
    ],
)
def test_case_file_whose_images_is_not_a_list(tmp_path, images, words):
    root = _dataset(tmp_path / "data")
    case = json.loads((root / "c.json").read_text())
    if images == "missing":
        del case["images"]
    else:
        case["images"] = images
    (root / "c.json").write_text(json.dumps(case))
    with pytest.raises(ValueError, match=f"c.json: expected 'images' to be a list of image entries, found {words}"):
        FluoroSegDataset(root)


def test_case_file_that_is_not_an_object_and_annotation_file_that_is_not_a_list(tmp_path):
    root = _dataset(tmp_path / "data")
    (root / "c" / "0000000000.json").write_text('{"category_id": 5}')
    with pytest.raises(
        ValueError,
        match="0000000000.json: an annotation file must be a JSON list of annotations, got an object at the top level",
    ):
        FluoroSegDataset(root)[0]
    (root / "c.json").write_text("[]")
    with pytest.raises(ValueError, match="c.json: a case file must be a JSON object .* got a list at the top level"):
        FluoroSegDataset(root)


def test_image_entry_with_a_non_numeric_grad_ncc(tmp_path):
    root = _dataset(tmp_path / "data")
    case = json.loads((root / "c.json").read_text())
    case["images"][0]["grad_ncc"] = "high"
    (root / "c.json").write_text(json.dumps(case))
    with pytest.raises(ValueError, match="grad_ncc 'high', expected a number"):
        FluoroSegDataset(root, min_grad_ncc=0.5)


# ------------------------------------------------------------------------------------------
# 2. a resumed run never mixes two datasets

SPEC = SceneSpec(images_per_ct=2).replace(device={"image_sizes": [[16, 16]]}, render={"views_per_scene": 1})


def test_resume_with_another_seed_spec_or_ct_set_is_refused(tmp_path):
    out = tmp_path / "out"
    claim_output(out, run_record([example_case()], SPEC, 3))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match=r"refusing to mix datasets: seed: 3 in the folder, 7 now"):
        generate(out, spec=SPEC, seed=7, resume=True, progress=False)
    bigger = SPEC.replace(device={"image_sizes": [[48, 48]]})
    with pytest.raises(ValueError, match=r"spec.device.image_sizes: \[\[16, 16\]\] in the folder, \[\[48, 48\]\] now"):
        generate(out, spec=bigger, seed=3, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"CT set: the folder has cases \['example'\], this run \['other'\]"):
        generate(out, [example_case("other")], spec=SPEC, seed=3, resume=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written by a refused run


def test_resume_with_another_fluorojax_version_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    claim_output(out, run_record([example_case()], SPEC, 3))
    monkeypatch.setattr(fj, "__version__", "99.0")
    with pytest.raises(ValueError, match=r'fluorojax_version: "0.1.0" in the folder, "99.0" now'):
        generate(out, spec=SPEC, seed=3, resume=True, progress=False)


def test_same_ct_names_with_other_files_are_a_different_ct_set(tmp_path):
    ct, labels = fj.example_paths()
    structures = str(Path(ct).with_name("example_structures.csv"))
    other = tmp_path / "structures.csv"
    other.write_text(Path(structures).read_text() + "999,extra\n")
    out = tmp_path / "out"
    claim_output(out, run_record([CaseSource("a", ct, labels, structures)], SPEC, 0))
    with pytest.raises(ValueError, match=r"CT set: .*\['a'\].*\['a'\] \(their files differ\)"):
        claim_output(out, run_record([CaseSource("a", ct, labels, str(other))], SPEC, 0))
    assert claim_output(out, run_record([CaseSource("a", ct, labels, structures)], SPEC, 0)) == out


def test_generate_refuses_a_folder_of_unrelated_files(tmp_path):
    (tmp_path / "thesis.tex").write_text("do not touch")
    with pytest.raises(ValueError, match="is not empty and holds no fluorojax dataset"):
        generate(tmp_path, spec=SPEC, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_run_record_is_hidden_from_readers_that_list_json(tmp_path):
    claim_output(tmp_path / "out", run_record([example_case()], SPEC, 0))
    assert [p.name for p in (tmp_path / "out").iterdir()] == [RUN_FILE]
    assert not list((tmp_path / "out").glob("*.json"))


def test_image_size_beyond_memory_fails_before_creating_the_folder(tmp_path):
    huge = SPEC.replace(device={"image_sizes": [[100000, 100000]]})
    with pytest.raises(ValueError, match=r"100000 x 100000 pixels needs at least .* GiB, more than"):
        generate(tmp_path / "out", spec=huge, progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------
# 3. no wrong numbers without an error


@pytest.mark.parametrize("photons", [5e9, 1e10, 1e12, 1e30])
def test_detector_noise_keeps_the_mean_at_any_photon_count(photons):
    """Kind: integer overflow. int32 Poisson counts gave a mean 0.215 instead of 0.5 at 1e10."""
    p = jnp.full((64, 64), 0.5)
    noisy = np.asarray(jax.jit(detector_noise)(jax.random.key(0), p, photons), np.float64)
    assert abs(noisy.mean() - 0.5) < 1e-6 and np.all(np.isfinite(noisy))


def test_poisson_noise_below_the_limit_is_the_plain_poisson_draw():
    p = jnp.linspace(0.0, 1.0, 4096).reshape(64, 64)
    key = jax.random.key(5)
    expected = jax.random.poisson(key, p * 1e4, p.shape).astype(jnp.float32) / 1e4
    np.testing.assert_array_equal(poisson_noise(key, p, 1e4), expected)
    big = np.asarray(poisson_noise(key, jnp.ones((64, 64)), 10 * POISSON_LIMIT), np.float64)
    # normal approximation: variance p / N0
    assert abs(big.var() / (1.0 / (10 * POISSON_LIMIT)) - 1.0) < 0.1


@pytest.mark.parametrize(
    "photons",
    [
        -100.0,
        0,
        np.inf,
        np.nan,
        np.array([1e3, -1.0]),
        jnp.asarray([1e3, 0.0]),
        np.float32(-5),
        jnp.asarray(-3.0),
    ],
)
def test_negative_or_non_finite_photons_are_refused_however_given(photons):
    with pytest.raises(
        ValueError, match=r"photons \(mean open-beam count per pixel\) must be a positive, finite number"
    ):
        detector_noise(jax.random.key(0), jnp.full((4, 4), 0.5), photons)


def test_photons_as_a_string_is_a_type_error():
    with pytest.raises(TypeError, match=r"photons .* must be an array of real numbers, got '1e3' \(str\)"):
        poisson_noise(jax.random.key(0), jnp.full((4, 4), 0.5), "1e3")


def test_nan_in_a_transmission_stays_in_its_pixel():
    p = jnp.full((64, 64), 0.5).at[3, 4].set(jnp.nan)
    out = np.asarray(detector_noise(jax.random.key(1), p, 1e3, crosstalk_fraction=0.2, electronic_std=1.0))
    assert np.isnan(out[3, 4]) and np.isnan(out).sum() == 1


def test_a_view_that_misses_the_volume_is_detected():
    """Truth: the renderer. A pixel with a non-zero line integral has a ray that crosses the grid."""
    volume = fj.Volume(np.ones((4, 5, 6), np.float32), np.diag([10.0, 10.0, 10.0, 1.0]))
    camera = fj.Camera(8, 8, 40.0, 1000.0)
    centre = np.asarray(volume.center)
    away = fj.look_at(centre + np.array([0.0, 600.0, 0.0]), centre + np.array([0.0, 1200.0, 0.0]))
    toward = fj.look_at(centre + np.array([0.0, 600.0, 0.0]), centre)
    assert not fj.volume.rays_hit_volume(volume, *camera.rays(away)).any()
    hit = fj.volume.rays_hit_volume(volume, *camera.rays(toward))
    image = np.asarray(fj.render(volume, camera, toward))
    assert hit.any() and not hit.all()
    np.testing.assert_array_equal(hit, image > 0)


# ------------------------------------------------------------------------------------------
# 4. validation does not depend on how a value is passed


@pytest.mark.parametrize("value", [8, np.int64(8), np.int32(8), jnp.asarray(8), np.asarray(8)])
def test_integer_arguments_accept_every_integer_type(value):
    assert fj.Camera(value, value, 1.0, 1000.0).shape == (8, 8)
    assert SceneSpec(images_per_ct=value).images_per_ct == 8
    assert kwire(segments=value * 3).mesh is not None


@pytest.mark.parametrize("value", ["8", 8.0, True, None, np.float64(8.0), jnp.asarray([8])])
def test_integer_arguments_refuse_other_types_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"Camera height \(pixels\) must be an integer >= 1, got"):
        fj.Camera(value, 8, 1.0, 1000.0)
    with pytest.raises(ValueError, match="images_per_ct must be an integer >= 1"):
        SceneSpec(images_per_ct=value)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda v: fj.Camera(8, 8, 1.0, v),
            ValueError,
            r"Camera sdd \(source-to-detector distance\) must be a positive, finite number \(mm\)",
        ),
        (
            lambda v: fj.carm_pose(0.0, 0.0, v),
            ValueError,
            "carm_pose source_to_isocenter must be a positive, finite number",
        ),
        (lambda v: kwire(diameter=v), ValueError, r"diameter must be a positive, finite number \(mm\)"),
        (
            lambda v: fj.Tool(kwire().mesh, "titanium", v),
            ValueError,
            r"Tool density must be a positive, finite number \(g/cm\^3\)",
        ),
        (
            lambda v: SceneSpec().replace(render={"mono_energy_kev": v}),
            ValueError,
            r"render.mono_energy_kev must be a positive, finite number \(keV\)",
        ),
    ],
)
@pytest.mark.parametrize("value", [-1.0, np.float32(-1.0), jnp.asarray(-1.0), np.nan, np.inf])
def test_positive_numbers_are_checked_whatever_their_type(call, error, words, value):
    with pytest.raises(error, match=words):
        call(value)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fj.Camera(8, 8, "1.0", 1000.0), "Camera pixel_size"),
        (lambda: fj.Camera(8, 8, 1.0, "1000"), "Camera sdd"),
        (lambda: fj.carm_pose("ten", 0.0, 500.0), "carm_pose lao_deg"),
        (lambda: fj.carm_pose(0.0, 0.0, 500.0, "origin"), "carm_pose isocenter"),
        (lambda: fj.look_at("here", (0.0, 0.0, 0.0)), "look_at source"),
        (lambda: kwire(length="long"), "length"),
        (lambda: fj.tools.box("big"), "box extents"),
        (lambda: SceneSpec().replace(views={"near_deg": "2"}), "views.near_deg"),
        (lambda: SceneSpec().replace(device={"sdd_mm": ["900", 1200]}), "device.sdd_mm min"),
        (lambda: SceneSpec().replace(tools={"replace_tissue": "yes"}), "tools.replace_tissue"),
        (
            lambda: detector_noise(jax.random.key(0), jnp.ones((2, 2)), 1e3, crosstalk_fraction="0.1"),
            "cross-talk fraction",
        ),
        (lambda: fj.scene.image_key("3", "case", 0), "seed"),
        (lambda: fj.transforms.so3_exp("x"), "so3_exp rotvec"),
        (lambda: fj.transforms.make_pose(np.eye(3), "origin"), "make_pose translation"),
        (lambda: fj.Volume(np.zeros((2, 2, 2)), "eye"), "Volume affine"),
        (lambda: fj.hu_to_mu(fj.Volume(np.zeros((2, 2, 2)), np.eye(4)), mu_water="0.02"), "hu_to_mu mu_water"),
    ],
)
def test_a_string_where_a_number_belongs_names_the_argument(call, name):
    with pytest.raises(TypeError, match=f"{name}.*must be .*got .*str"):
        call()


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: fj.transforms.so3_exp(np.zeros(4)), r"so3_exp rotvec must have shape \(..., 3\), got shape \(4,\)"),
        (lambda: fj.transforms.se3_log(np.eye(3)), r"se3_log pose must have shape \(..., 4, 4\), got shape \(3, 3\)"),
        (
            lambda: jax.jit(fj.transforms.quaternion_to_matrix)(jnp.ones((2, 3))),
            r"quaternion_to_matrix quaternion must have shape \(..., 4\)",
        ),
    ],
)
def test_wrong_trailing_shapes_are_refused_even_under_jit(call, words):
    """Kind: a (..., 4) rotation vector used to be read as its first three entries without a word."""
    with pytest.raises(ValueError, match=words):
        call()


def test_writer_camera_entries_are_checked_whatever_their_type(tmp_path):
    writer = FluoroSegWriter(tmp_path)
    image = np.ones((4, 4), np.float32)
    with pytest.raises(
        TypeError, match=r"camera focal_length must be a positive, finite number \(mm\), got '1000' \(str\)"
    ):
        writer.write_image("c", 0, image, [], {"focal_length": "1000", "pixel_size": 1.0})
    with pytest.raises(ValueError, match=r"camera pixel_size \(mm\) must be a positive, finite number"):
        writer.write_image("c", 0, image, [], {"focal_length": 1000.0, "pixel_size": np.array([1.0, np.nan])})
    assert writer.write_image("c", 0, image, [], {"focal_length": jnp.float32(1000.0), "pixel_size": np.float16(0.5)})
    assert writer.image_entry("c", 0)["camera"] == {"focal_length": 1000.0, "pixel_size": [0.5, 0.5]}


def test_reader_arguments_accept_numpy_and_refuse_strings(tmp_path):
    root = _dataset(tmp_path / "data")
    ds = FluoroSegDataset(root, image_size=(np.int64(4), np.int32(4)), min_area=np.float32(0.001))
    (batch,) = list(ds.batches(np.int64(1), prefetch=np.int64(0)))
    assert batch["image"].shape == (1, 4, 4)
    with pytest.raises(TypeError, match=r"image_size\[0\] \(H\) must be an integer >= 1, got '4'"):
        FluoroSegDataset(root, image_size=("4", 4))
    with pytest.raises(TypeError, match="batch_size must be an integer >= 1, got '2'"):
        next(ds.batches("2"))
    with pytest.raises(ValueError, match="min_area must be a number in"):
        FluoroSegDataset(root, min_area=np.nan)


def test_generate_arguments_are_checked_whatever_their_type(tmp_path):
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        generate(tmp_path / "a", spec=SPEC, seed=np.int64(-1), progress=False)
    with pytest.raises(TypeError, match="chunks_per_task must be an integer >= 1, got 2.0"):
        generate(tmp_path / "a", spec=SPEC, chunks_per_task=2.0, progress=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        generate(tmp_path / "a", spec=SPEC, backend="slurm", progress=False)
    assert not (tmp_path / "a").exists()


def test_wrong_kinds_are_both_type_and_value_errors():
    """Callers that caught ValueError for a bad argument keep working."""
    assert issubclass(_validate.ArgumentTypeError, TypeError) and issubclass(_validate.ArgumentTypeError, ValueError)


def test_traced_values_are_not_checked_and_follow_the_docstring():
    """Under jit a Camera with a traced negative sdd builds (values cannot be checked there)."""
    camera = jax.jit(lambda sdd: fj.Camera(4, 4, 1.0, sdd).intrinsics)(-5.0)
    assert float(camera[0, 0]) == -5.0


# ------------------------------------------------------------------------------------------
# 5. the command line: exit status 2 and one line naming the input and the problem


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("fake.png", b"this is text\n", "target image fake.png: cannot read it as PNG"),
        ("fake.npy", b"this is text\n", "target image fake.npy: cannot read it as NPY"),
        ("fake.tiff", b"this is text\n", "target image fake.tiff: cannot read it as TIFF"),
        ("empty.png", b"", "target image empty.png: cannot read it as PNG"),
        ("empty.npy", b"", "target image empty.npy: cannot read it as NPY (EOFError"),
    ],
)
def test_register_target_that_is_not_an_image(tmp_path, monkeypatch, capsys, name, content, words):
    monkeypatch.chdir(tmp_path)
    Path(name).write_bytes(content)
    assert main(["register", name]) == 2
    assert words in _error(capsys)


def test_register_empty_target(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("empty.npy", np.zeros((0, 0), np.float32))
    assert main(["register", "empty.npy"]) == 2
    assert "target image empty.npy is empty (0 x 0 pixels)" in _error(capsys)


def test_register_checks_its_outputs_before_registering(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("target.npy", np.ones((16, 16), np.float32))
    assert main(["register", "target.npy", "--out", "missing/pose.json"]) == 2
    err = _error(capsys)
    assert "--out 'missing/pose.json': its folder 'missing' does not exist" in err and "partial" not in err
    Path("file").write_text("")
    assert main(["register", "target.npy", "--overlay", "file/overlay.png"]) == 2
    assert "--overlay 'file/overlay.png': 'file' is a file, not a folder" in _error(capsys)


def test_render_size_beyond_memory_is_refused_before_allocating(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["render", "--size", "100000", "100000", "--out", "x.npy"]) == 2
    assert "a 100000 x 100000 image needs at least 596.0 GiB, more than the" in _error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "out, words",
    [
        ("nowhere/drr.png", "--out 'nowhere/drr.png': its folder 'nowhere' does not exist"),
        ("afile/drr.png", "--out 'afile/drr.png': 'afile' is a file, not a folder"),
        ("adir.png", "--out 'adir.png' is a folder, expected a file name"),
    ],
)
def test_render_into_an_unwritable_place(tmp_path, monkeypatch, capsys, out, words):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("")
    Path("adir.png").mkdir()
    assert main(["render", "--size", "8", "8", "--out", out]) == 2
    err = _error(capsys)
    assert words in err and ".partial" not in err and ".tmp" not in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no file can be created")
def test_render_into_a_read_only_folder(capsys):
    assert main(["render", "--size", "8", "8", "--out", "/proc/drr.npy"]) == 2
    err = _error(capsys)
    assert "--out '/proc/drr.npy' cannot be written" in err and ".tmp" not in err


@pytest.mark.parametrize(
    "content, words",
    [
        ("[[1, 0, 0, 0], [0, 1, 0", "pose file bad.json: not valid JSON"),
        ("[[1, 0], [0, 1, 0]]", "pose in bad.json must be a 4x4 nested list of numbers"),
        (
            '[["a", 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]',
            "pose in bad.json must be a 4x4 nested list of numbers (could not convert",
        ),
        (
            "[[1, 0, 0], [0, 1, 0], [0, 0, 1]]",
            "pose in bad.json (a 4x4 world_from_camera matrix) must have shape (4, 4), got shape (3, 3)",
        ),
        ("[[NaN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]", "must be finite, got 1 NaN / inf entries"),
    ],
)
def test_render_with_a_malformed_pose_file(tmp_path, monkeypatch, capsys, content, words):
    monkeypatch.chdir(tmp_path)
    Path("bad.json").write_text(content)
    assert main(["render", "--size", "8", "8", "--pose", "bad.json", "--out", "x.npy"]) == 2
    assert words in _error(capsys)


def test_render_a_view_that_looks_away_from_the_ct(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ct = fj.load_example()
    centre = np.asarray(ct.center)
    pose = np.asarray(fj.look_at(centre + np.array([0.0, 600.0, 0.0]), centre + np.array([0.0, 1200.0, 0.0])))
    Path("away.json").write_text(json.dumps(pose.tolist()))
    assert main(["render", "--size", "8", "8", "--pose", "away.json", "--out", "x.npy"]) == 2
    assert "--pose: no ray of the 8 x 8 camera crosses the CT; the view looks away from the volume" in _error(capsys)
    assert not Path("x.npy").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "--sdd", "nan"],
        ["render", "--carm", "inf", "0"],
        ["render", "--size", "0", "8"],
        ["render", "--seed", "-1"],
        ["preview", "--frames", "2.5"],
    ],
)
def test_non_finite_or_out_of_range_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_generate_config_beyond_memory_fails_before_creating_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("huge.yaml").write_text("device:\n  image_sizes: [[100000, 100000]]\n")
    assert main(["generate", "out", "--config", "huge.yaml", "--no-progress"]) == 2
    assert "8 images of 100000 x 100000 pixels needs at least" in _error(capsys)
    assert not Path("out").exists()


def test_generate_yaml_syntax_error_is_reported_as_such(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("broken.yaml").write_text("device:\n  image_sizes: [[32, 32]\n")
    assert main(["generate", "out", "--config", "broken.yaml", "--no-progress"]) == 2
    err = _error(capsys)
    assert "broken.yaml: YAML syntax error" in err and "!!python" not in err
    Path("evil.yaml").write_text("images_per_ct: !!python/object/apply:os.system ['true']\n")
    assert main(["generate", "out", "--config", "evil.yaml", "--no-progress"]) == 2
    assert "evil.yaml: not plain YAML data (only safe YAML is read" in _error(capsys)


def test_generate_into_a_folder_of_unrelated_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("out/notes.txt").write_text("mine")
    assert main(["generate", "out", "--images-per-ct", "1", "--no-progress"]) == 2
    assert "output folder 'out' is not empty and holds no fluorojax dataset" in _error(capsys)


def test_preview_into_an_unwritable_place(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["preview", "--out", "missing/sweep.gif"]) == 2
    err = _error(capsys)
    assert "--out 'missing/sweep.gif': its folder 'missing' does not exist" in err and "partial" not in err
