"""FluoroSeg writer: output decoded with plain pycocotools / json / base64 / tifffile."""

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from pycocotools import mask as coco_mask

from fluorojax.fluoroseg import rle, text
from fluorojax.fluoroseg import writer as writer_module
from fluorojax.fluoroseg.writer import Annotation, FluoroSegWriter, camera_dict

H, W = 32, 40


def _blob(rng, h=H, w=W):
    """A random ellipse mask (bool (h, w))."""
    rows, cols = np.mgrid[:h, :w]
    cy, cx = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
    ry, rx = rng.uniform(3, 8, size=2)
    return ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1


def _inputs(seed):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 1.0, size=(H, W)).astype(np.float32)
    mask = _blob(rng)
    travel = np.where(_blob(rng), rng.uniform(0.5, 90.0, size=(H, W)), 0.0).astype(np.float32)
    outer = _blob(rng)
    inner = outer & (rng.random((H, W)) < 0.4)
    entry0 = rng.uniform(600, 700, size=(H, W))
    hits = np.full((3, 2, H, W), np.inf, np.float32)
    hits[0, 0][outer], hits[0, 1][outer] = entry0[outer], entry0[outer] + 5.25
    hits[1, 0][inner], hits[1, 1][inner] = entry0[inner] + 9.5, entry0[inner] + 12.0
    annotations = [
        Annotation(category_id=45, mask=mask),  # vertebrae_C6
        Annotation(category_id=3, travel=travel),  # kidney_left
        Annotation(category_id=91, hits=hits),  # skull; third layer empty
        Annotation(category_id=5, mask=np.zeros((H, W), bool)),  # covers nothing: left out
        Annotation(
            category_id=1000,
            mask=_blob(rng),
            descriptions=text.describe_tool("k_wire", "steel"),
            extra={"tool": {"kind": "k_wire", "material": "steel"}},
        ),
    ]
    pose = np.eye(4)
    pose[:3, 3] = rng.normal(size=3) * 10
    camera = {
        "focal_length": 1020.0,
        "pixel_size": (0.8, 0.75),
        "intrinsics": np.array([[1275.0, 0, W / 2], [0, 1360.0, H / 2], [0, 0, 1]]),
        "pose": pose,
        "projection_matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
    }
    return image, annotations, camera, (mask, travel, hits)


def _seed(case, index):
    return 100 * sum(map(ord, case)) + index


def _write_test_image(writer, case, index):
    """Write image ``index`` of ``case`` with its seeded inputs and the fixed metadata every
    dataset of these tests carries; returns what ``write_image`` returns."""
    image, annotations, camera, _ = _inputs(_seed(case, index))
    return writer.write_image(
        case,
        index,
        image,
        annotations,
        camera,
        view="AP",
        spectrum={"kvp": 90.0, "energies_keV": np.arange(3.0)},
        seed=index,
        extra={"grad_ncc": 0.9},
    )


def _write_dataset(root, images=(0, 1, 2, 3), cases=("case_a", "case_b")):
    w = FluoroSegWriter(root)
    for case in cases:
        for index in images:
            _write_test_image(w, case, index)
        w.write_case(case, volumes=[{"id": 0, "file_name": f"{case}.nii.gz"}])
    w.write_splits(train=list(cases[:1]), val=list(cases[1:]))
    return w


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _decode_rle(counts, size):
    return coco_mask.decode({"size": size, "counts": counts.encode("utf-8")}).astype(bool)


def _decode_f16(payload):
    return np.frombuffer(base64.b64decode(payload), dtype="<f2")


def test_written_annotations_decode_with_pycocotools(tmp_path):
    image, annotations, camera, (mask, travel, hits) = _inputs(0)
    w = FluoroSegWriter(tmp_path)
    assert w.write_image("case_a", 7, image, annotations, camera, seed=7)
    with open(tmp_path / "case_a" / "0000000007.json") as f:
        written = json.load(f)
    assert isinstance(written, list) and [a["category_id"] for a in written] == [45, 3, 91, 1000]
    binary, trav, hit, tool = written

    assert set(binary["segmentation"]) == {"size", "counts"} and binary["segmentation"]["size"] == [H, W]
    decoded = _decode_rle(binary["segmentation"]["counts"], [H, W])
    np.testing.assert_array_equal(decoded, mask)
    reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert binary["segmentation"]["counts"] == reference["counts"].decode("utf-8")
    assert binary["bbox"] == coco_mask.toBbox(reference).tolist() and binary["area"] == int(coco_mask.area(reference))
    assert binary["descriptions"] == list(text.describe(45))

    assert set(trav["segmentation"]) == {"size", "counts", "travel"}
    trav_mask = _decode_rle(trav["segmentation"]["counts"], [H, W])
    np.testing.assert_array_equal(trav_mask, travel > 0)
    values = _decode_f16(trav["segmentation"]["travel"])
    np.testing.assert_array_equal(values, travel[travel > 0].astype(np.float16))  # row-major travel[mask]
    np.testing.assert_allclose(values.astype(np.float32), travel[travel > 0], rtol=2**-11)

    seg = hit["segmentation"]
    assert set(seg) == {"size", "counts", "hits"} and len(seg["counts"]) == 2 and len(seg["hits"]) == 4
    for k in range(2):
        layer = _decode_rle(seg["counts"][k], [H, W])
        np.testing.assert_array_equal(layer, np.isfinite(hits[k, 0]))
        for j in range(2):
            np.testing.assert_allclose(
                _decode_f16(seg["hits"][2 * k + j]).astype(np.float32), hits[k, j][layer], rtol=2**-11
            )
    np.testing.assert_array_equal(_decode_rle(seg["counts"][0], [H, W]), np.isfinite(hits[0, 0]))  # first RLE = mask

    assert tool["tool"] == {"kind": "k_wire", "material": "steel"} and tool["descriptions"][0] == "steel K-wire"

    stored = tifffile.imread(tmp_path / "case_a" / "0000000007.tiff")
    assert stored.dtype == np.float32 and stored.shape == (H, W)
    np.testing.assert_array_equal(stored, image)
    with tifffile.TiffFile(tmp_path / "case_a" / "0000000007.tiff") as tif:
        assert len(tif.pages) == 1 and tif.pages[0].samplesperpixel == 1


def test_tiff_reads_with_opencv_flags(tmp_path):
    cv2 = pytest.importorskip("cv2")
    image, annotations, camera, _ = _inputs(1)
    FluoroSegWriter(tmp_path).write_image("c", 0, image, annotations, camera)
    read = cv2.imread(str(tmp_path / "c" / "0000000000.tiff"), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, image)


def test_case_file_and_splits(tmp_path):
    _write_dataset(tmp_path)
    with open(tmp_path / "case_a.json") as f:
        case = json.load(f)
    assert set(case) == {"info", "licenses", "categories", "volumes", "images", "annotations"}
    assert case["volumes"] == [{"id": 0, "file_name": "case_a.nii.gz"}] and case["annotations"] == []
    ids = {c["id"]: c for c in case["categories"]}
    assert ids[45]["name"] == "vertebrae_C6" and ids[45]["supercategory"] == "totalsegmentator_bone"
    assert ids[1000]["name"] == "tool" and ids[10000]["name"] == "spleen_cutoff_I"
    assert [im["id"] for im in case["images"]] == [0, 1, 2, 3]
    first = case["images"][0]
    assert first["file_name"] == "0000000000.tiff" and (first["height"], first["width"]) == (H, W)
    assert first["camera"] == {"focal_length": 1020.0, "pixel_size": [0.8, 0.75]}
    _, _, camera, _ = _inputs(_seed("case_a", 0))
    np.testing.assert_array_equal(first["pose"], camera["pose"])
    np.testing.assert_array_equal(first["intrinsics"], camera["intrinsics"])
    np.testing.assert_array_equal(first["projection_matrix"], camera["projection_matrix"])
    assert first["view"] == "AP" and first["seed"] == 0 and first["grad_ncc"] == 0.9
    assert first["spectrum"] == {"kvp": 90.0, "energies_keV": [0.0, 1.0, 2.0]}
    assert (tmp_path / "train.txt").read_text() == "case_a.json\n"
    assert (tmp_path / "val.txt").read_text() == "case_b.json\n"
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["case_a.json", "case_b.json"]


def test_same_inputs_give_identical_bytes(tmp_path):
    _write_dataset(tmp_path / "one")
    _write_dataset(tmp_path / "two")
    one, two = _tree_bytes(tmp_path / "one"), _tree_bytes(tmp_path / "two")
    assert len(one) == 2 * 2 * 4 + 2 + 2 and one == two


def test_resume_after_a_crash(tmp_path, monkeypatch):
    reference = _tree_bytes(_write_dataset(tmp_path / "reference").root)

    root = tmp_path / "crashed"
    w = FluoroSegWriter(root)
    for index in range(3):
        _write_test_image(w, "case_a", index)
    # image 3 is killed after its TIFF, while its annotation file is being moved into place
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith("0000000003.json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(writer_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _write_test_image(w, "case_a", 3)
    monkeypatch.undo()
    assert (root / "case_a" / "0000000003.tiff").exists() and not (root / "case_a" / "0000000003.json").exists()
    assert not list((root / "case_a").glob(".*"))  # the interrupted write cleaned its temp file
    # a harder kill leaves temp files behind
    (root / "case_a" / ".0000000004.tiff.tmp-4242").write_bytes(b"half a tiff")
    (root / ".case_a.json.tmp-4242").write_bytes(b'{"info":')

    resumed = FluoroSegWriter(root)
    assert resumed.completed("case_a") == {0, 1, 2}
    assert not list(root.rglob(".*tmp*"))
    written = []
    for case in ("case_a", "case_b"):
        for index in range(4):
            written.append(_write_test_image(resumed, case, index))
        resumed.write_case(case, volumes=[{"id": 0, "file_name": f"{case}.nii.gz"}])
    resumed.write_splits(train=["case_a"], val=["case_b"])
    assert written == [False, False, False, True] + [True] * 4
    assert _tree_bytes(root) == reference


def test_complete_images_are_not_written_twice(tmp_path):
    image, annotations, camera, _ = _inputs(2)
    w = FluoroSegWriter(tmp_path)
    assert w.write_image("c", 0, image, annotations, camera)
    before = (tmp_path / "c" / "0000000000.json").read_bytes()
    assert not w.write_image("c", 0, image * 2, annotations[:1], camera)
    assert not FluoroSegWriter(tmp_path).write_image("c", 0, image * 2, annotations[:1], camera)
    assert (tmp_path / "c" / "0000000000.json").read_bytes() == before
    w.write_case("c")
    assert [im["id"] for im in json.loads((tmp_path / "c.json").read_text())["images"]] == [0]


def test_camera_dict_from_a_fluorojax_camera():
    from fluorojax.camera import Camera

    cam = Camera(H, W, pixel_size=(0.5, 0.6), sdd=1000.0)
    angle = 0.3
    pose = np.array(
        [
            [np.cos(angle), 0, np.sin(angle), 10.0],
            [0, 1, 0, -5.0],
            [-np.sin(angle), 0, np.cos(angle), -700.0],
            [0, 0, 0, 1],
        ],
        np.float32,
    )
    d = camera_dict(cam, pose)
    assert d["focal_length"] == 1000.0 and d["pixel_size"] == pytest.approx([0.5, 0.6])
    k = np.array([[1000 / 0.5, 0, W / 2], [0, 1000 / 0.6, H / 2], [0, 0, 1]])
    np.testing.assert_allclose(d["intrinsics"], k, rtol=1e-6)
    np.testing.assert_allclose(
        d["projection_matrix"], k @ np.linalg.inv(pose.astype(np.float64))[:3], rtol=1e-5, atol=1e-3
    )
    np.testing.assert_array_equal(d["pose"], pose)


@pytest.mark.parametrize(
    "annotation,match",
    [
        (Annotation(45), "exactly one of mask, travel, hits"),
        (Annotation(45, mask=np.ones((H, W), bool), travel=np.ones((H, W))), "exactly one"),
        (Annotation(45, mask=np.ones((H + 1, W), bool)), "expected"),
        (Annotation(45, mask=np.ones((H, W), np.uint8)), "bool"),
        (Annotation(999, mask=np.ones((H, W), bool)), "unknown FluoroSeg category 999"),
        (Annotation(45, travel=np.full((H, W), np.nan)), "finite"),
        (Annotation(45, hits=np.stack([np.full((2, H, W), np.inf), np.ones((2, H, W))])), "nest"),
        (Annotation(45, hits=np.stack([np.stack([np.ones((H, W)), np.full((H, W), np.inf)])])), "same pixels"),
        (Annotation(45, mask=np.ones((H, W), bool), descriptions="C6"), "descriptions"),
        (Annotation(45, mask=np.ones((H, W), bool), extra={"bbox": 1}), "clash"),
    ],
)
def test_bad_annotations_raise(tmp_path, annotation, match):
    image, _, camera, _ = _inputs(3)
    w = FluoroSegWriter(tmp_path)
    with pytest.raises(ValueError, match=match):
        w.write_image("c", 0, image, [annotation], camera)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_bad_images_cameras_and_names_raise(tmp_path):
    image, annotations, camera, _ = _inputs(4)
    w = FluoroSegWriter(tmp_path)
    with pytest.raises(ValueError, match="finite"):
        w.write_image("c", 0, np.full((H, W), np.nan, np.float32), annotations, camera)
    with pytest.raises(ValueError, match="float"):
        w.write_image("c", 0, np.ones((H, W), np.uint16), annotations, camera)
    with pytest.raises(ValueError, match="focal_length"):
        w.write_image("c", 0, image, annotations, {"pixel_size": 1.0})
    with pytest.raises(ValueError, match="positive"):
        w.write_image("c", 0, image, annotations, {"focal_length": -1.0, "pixel_size": 1.0})
    with pytest.raises(ValueError, match="pose must have shape"):
        w.write_image("c", 0, image, annotations, {"focal_length": 1.0, "pixel_size": 1.0, "pose": np.eye(3)})
    with pytest.raises(ValueError, match="clash"):
        w.write_image("c", 0, image, annotations, camera, extra={"file_name": "x"})
    with pytest.raises(TypeError, match="cannot be written as JSON"):
        w.write_image("c", 0, image, annotations, camera, extra={"x": object()})
    for case in ("../up", "/abs", "a/b", "x.json", ""):
        with pytest.raises(ValueError, match="case name"):
            w.write_image(case, 0, image, annotations, camera)
    with pytest.raises(ValueError, match="image index"):
        w.write_image("c", -1, image, annotations, camera)
    with pytest.raises(ValueError, match="no complete image"):
        w.write_case("c")
    w.write_image("c", 0, image, annotations, camera)
    w.write_case("c")
    with pytest.raises(ValueError, match="both train and val"):
        w.write_splits(["c"], ["c"])
    with pytest.raises(FileNotFoundError, match="write_case"):
        w.write_splits(["c", "d"], [])


def test_rle_run_lengths_match_numpy():
    rng = np.random.default_rng(5)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 4 == 0:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = True
        flat = mask.ravel(order="F")
        edges = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
        runs = np.diff(edges)
        if flat[0]:
            runs = np.concatenate([[0], runs])
        counts = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        np.testing.assert_array_equal(rle.rle_run_lengths(counts), runs)


def test_rle_decoding_rejects_bad_payloads():
    mask = np.zeros((6, 5), bool)
    mask[2:4, 1:3] = True
    counts = rle.encode_rle(mask)
    np.testing.assert_array_equal(rle.decode_rle(counts, [6, 5]), mask)
    with pytest.raises(ValueError, match="cover"):
        rle.decode_rle(counts, [10, 10])  # pycocotools alone would read past the runs
    with pytest.raises(ValueError, match="cover|malformed"):
        rle.decode_rle(rle.encode_rle(np.ones((9, 9), bool)), [6, 5])
    with pytest.raises(ValueError, match="malformed"):
        rle.decode_rle("\x7f\x7f", [6, 5])
    with pytest.raises(ValueError, match="does not match the image size"):
        rle.decode_segmentation({"size": [6, 5], "counts": counts}, 5, 6)
    with pytest.raises(ValueError, match="holds 3 values"):
        rle.decode_values(base64.b64encode(np.ones(3, "<f2").tobytes()).decode(), 4)
    with pytest.raises(ValueError, match="base64"):
        rle.decode_values("!!!", 1)
    with pytest.raises(ValueError, match="unknown segmentation type"):
        rle.segmentation_kind({"size": [6, 5], "counts": counts, "extra": 1})


def test_written_dataset_loads_with_the_reader(tmp_path):
    from fluorojax.fluoroseg.reader import FluoroSegDataset

    _write_dataset(tmp_path)
    train = FluoroSegDataset(tmp_path, "train", image_size=None, categories="full", min_area=None, max_area=None)
    val = FluoroSegDataset(tmp_path, "val", image_size=None, categories="full", min_area=None, max_area=None)
    assert len(train) == len(val) == 4
    for index in range(4):
        image, _, camera, (mask, travel, hits) = _inputs(_seed("case_b", index))
        s = val[index]
        np.testing.assert_array_equal(s["image"], image)
        assert s["labels"].tolist() == [45, 3, 91, 1000]
        np.testing.assert_array_equal(s["masks"][0], mask)
        np.testing.assert_array_equal(s["masks"][1], travel > 0)
        np.testing.assert_allclose(s["travel"][1], travel, rtol=2**-11)
        np.testing.assert_array_equal(s["masks"][2], np.isfinite(hits[0, 0]))
        finite = np.isfinite(hits[:, 0])
        expected = np.where(finite, hits[:, 1], 0).astype(np.float64).sum(0) - np.where(finite, hits[:, 0], 0).sum(0)
        np.testing.assert_allclose(s["travel"][2], expected, atol=0.5)  # float16 depths near 600 mm
        assert s["descriptions"][3][0] == "steel K-wire" and s["image_info"]["seed"] == index
        assert s["camera"] == {"focal_length": 1020.0, "pixel_size": [0.8, 0.75]}
