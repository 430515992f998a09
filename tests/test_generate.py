"""The generator end to end, at small sizes: reader round trip, determinism, resume, backends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from fluorojax.fluoroseg import FluoroSegDataset, FluoroSegWriter
from fluorojax.scene.generate import (
    CaseSource,
    example_case,
    find_cases,
    generate,
    prepare_case,
    read_structures,
    regenerate_image,
    render_scene_images,
)
from fluorojax.scene.spec import SceneSpec
from fluorojax.volume import example_paths

SEED = 3
SPEC = SceneSpec(images_per_ct=4).replace(
    device={"image_sizes": [[32, 32]], "photons": [1e3, 1e4], "spectrum_bins": 4},
    tools={
        "probability": 1.0,
        "max_count": 1,
        "kinds": ["k_wire"],
        "kwire_lengths_mm": [150.0],
        "materials": ["stainless_steel"],
        "replace_tissue": False,
    },
    render={"views_per_scene": 2},
    views={"near_standard_fraction": 0.5},
)


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    summary = generate(root, spec=SPEC, seed=SEED, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def prepared():
    return prepare_case(example_case(), SPEC)


def test_layout_and_summary(reference):
    root, summary = reference
    assert summary.written == 4 and summary.skipped == 0 and summary.cases == 1
    names = sorted(os.listdir(root / "example"))
    assert names == [f"{i:010d}.{ext}" for i in range(4) for ext in ("json", "tiff")]
    assert (root / "train.txt").read_text() == "example.json\n" and (root / "val.txt").read_text() == ""
    assert {"prepare", "volume", "tools", "physics", "annotate", "write"} <= set(summary.stages)


def test_reader_masks_equal_rendered(reference, prepared):
    """An independent reader (FluoroSegDataset) sees exactly the rendered masks and travel."""
    root, _ = reference
    dataset = FluoroSegDataset(root, "train", image_size=None, categories="full", min_area=None, max_area=None)
    assert len(dataset) == 4
    records = render_scene_images(prepared, SPEC, SEED, range(0, 2)) + render_scene_images(
        prepared, SPEC, SEED, range(2, 4)
    )
    seen_tool = False
    for i, record in enumerate(records):
        sample = dataset[i]
        info = sample["image_info"]
        assert info["id"] == i and info["seed"] == SEED and info["view"]["name"] == record.view["name"]
        np.testing.assert_array_equal(sample["image"], record.image.astype(np.float32))
        expected = {a.category_id: a for a in record.annotations}
        assert list(sample["labels"]) == [a.category_id for a in record.annotations]
        for k, category_id in enumerate(sample["labels"]):
            travel = np.asarray(expected[int(category_id)].travel)
            np.testing.assert_array_equal(sample["masks"][k], travel > 0)
            np.testing.assert_allclose(
                sample["travel"][k], travel.astype(np.float16).astype(np.float32), rtol=0, atol=0
            )
            seen_tool |= int(category_id) == 1000
        assert len(sample["labels"]) >= 5
    assert seen_tool, "the K-wire should be visible in at least one of the 4 views"


def test_cutoff_structures_get_cutoff_ids(prepared):
    by_label = dict(zip(prepared.label_ids, prepared.category_ids))
    names = read_structures(Path(example_paths()[0]).with_name("example_structures.csv"))
    ids = {name: label for label, name in names.items()}
    assert by_label[ids["vertebrae_T7"]] == 37  # inside the scan: its own FluoroSeg id
    from fluorojax.fluoroseg import get_category

    assert get_category(by_label[ids["vertebrae_L3"]]).name == "vertebrae_L3_cutoff_I"
    assert get_category(by_label[ids["vertebrae_C5"]]).name == "vertebrae_C5_cutoff_S"
    assert get_category(by_label[ids["rib_left_1"]]).name == "rib_left_1"  # by name, not the label map's number


def test_same_seed_same_bytes_and_regeneration(reference, tmp_path):
    root, _ = reference
    generate(tmp_path / "again", spec=SPEC, seed=SEED, progress=False)
    assert _tree(tmp_path / "again") == _tree(root)
    record = regenerate_image(example_case(), SPEC, SEED, 3)
    writer = FluoroSegWriter(root)
    assert writer.image_entry("example", 3)["view"] == json.loads(json.dumps(record.view))
    np.testing.assert_array_equal(tifffile.imread(root / "example" / "0000000003.tiff"), record.image)


def test_resume_after_crash(reference, tmp_path, monkeypatch):
    root, _ = reference
    original = FluoroSegWriter.write_image
    calls = []

    def crashing(self, *args, **kwargs):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(args[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FluoroSegWriter, "write_image", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tmp_path, spec=SPEC, seed=SEED, progress=False)
    monkeypatch.setattr(FluoroSegWriter, "write_image", original)
    assert len(list((tmp_path / "example").glob("*.tiff"))) == 3 and not (tmp_path / "example.json").exists()
    with pytest.raises(ValueError, match="resume"):
        generate(tmp_path, spec=SPEC, seed=SEED, progress=False)
    summary = generate(tmp_path, spec=SPEC, seed=SEED, progress=False, resume=True)
    assert (summary.written, summary.skipped) == (1, 3)
    assert _tree(tmp_path) == _tree(root)


def test_find_cases(tmp_path):
    ct, labels = example_paths()
    case = tmp_path / "cases" / "patient_a"
    case.mkdir(parents=True)
    os.symlink(ct, case / "ct.nii.gz")
    os.symlink(labels, case / "labels.nii.gz")
    with pytest.raises(FileNotFoundError, match="structures.csv"):
        find_cases(tmp_path / "cases")
    (case / "structures.csv").write_bytes(Path(ct).with_name("example_structures.csv").read_bytes())
    (found,) = find_cases(tmp_path / "cases")
    assert found == CaseSource(
        "patient_a", str(case / "ct.nii.gz"), str(case / "labels.nii.gz"), str(case / "structures.csv")
    )
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "missing")
    with pytest.raises(ValueError, match="together"):
        CaseSource("x", ct=ct)


def test_ray_backend_without_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    with pytest.raises(ImportError, match=r"backend='ray'.*pip install 'fluorojax\[ray\]'"):
        generate(tmp_path, spec=SPEC, seed=SEED, progress=False, backend="ray")


@pytest.mark.slow
def test_ray_backend_writes_the_same_dataset(reference, tmp_path):
    ray = pytest.importorskip("ray")
    root, _ = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        generate(tmp_path, spec=SPEC, seed=SEED, progress=False, backend="ray", chunks_per_task=1)
    finally:
        ray.shutdown()
    assert _tree(tmp_path) == _tree(root)


@pytest.mark.slow
def test_two_local_devices_write_the_same_dataset(reference, tmp_path):
    root, _ = reference
    code = (
        "import jax; assert jax.local_device_count() == 2\n"
        "from tests.test_generate import SPEC, SEED\n"
        "from fluorojax.scene.generate import generate\n"
        f"generate({str(tmp_path)!r}, spec=SPEC, seed=SEED, progress=False)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[1])
    assert _tree(tmp_path) == _tree(root)
