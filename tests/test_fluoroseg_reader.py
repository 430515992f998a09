"""FluoroSeg reader on small datasets built here with pycocotools + json + tifffile (no writer)."""

import base64
import json
import threading

import numpy as np
import pytest
import tifffile
from pycocotools import mask as coco_mask

from fluorojax.fluoroseg import text
from fluorojax.fluoroseg.categories import REDUCED_NAMES
from fluorojax.fluoroseg.reader import FluoroSegDataset, UnsafePathError

H, W = 32, 40


# -- building datasets by the format document --------------------------------------------------


def _rle(mask):
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("utf-8")


def _f16(values):
    return base64.b64encode(np.asarray(values).astype(np.float16).tobytes()).decode("utf-8")


def binary(mask):
    return {"size": list(mask.shape), "counts": _rle(mask)}


def travel_seg(travel):
    mask = travel > 0
    return {"size": list(mask.shape), "counts": _rle(mask), "travel": _f16(travel[mask])}


def hits_seg(layers):
    """layers: list of (entry (H, W), exit (H, W)) with inf where there is no hit."""
    seg = {"size": list(layers[0][0].shape), "counts": [], "hits": []}
    for entry, exit_ in layers:
        mask = np.isfinite(entry)
        seg["counts"].append(_rle(mask))
        seg["hits"] += [_f16(entry[mask]), _f16(exit_[mask])]
    return seg


def ann(category_id, segmentation, **extra):
    mask = _decode_any(segmentation)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = (
        [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        if rows.size
        else [0, 0, 0, 0]
    )
    return {"category_id": category_id, "bbox": bbox, "segmentation": segmentation, **extra}


def _decode_any(seg, h=H, w=W):
    if isinstance(seg, list):
        return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(seg, h, w))).astype(bool)
    counts = seg["counts"][0] if isinstance(seg["counts"], list) else seg["counts"]
    return coco_mask.decode({"size": seg["size"], "counts": counts.encode()}).astype(bool)


def write_case(root, case, images, extra_entry=None):
    """images: list of (image (h, w) float32, annotations list). Writes CASE.json and CASE/."""
    (root / case).mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (image, annotations) in enumerate(images):
        name = f"{i:010d}.tiff"
        tifffile.imwrite(root / case / name, image)
        (root / case / f"{i:010d}.json").write_text(json.dumps(annotations))
        entry = {
            "id": i,
            "file_name": name,
            "height": image.shape[0],
            "width": image.shape[1],
            "camera": {"focal_length": 1000.0 + i, "pixel_size": [0.5, 0.5]},
        }
        entry.update((extra_entry or {}).get(i, {}))
        entries.append(entry)
    (root / f"{case}.json").write_text(
        json.dumps({"info": {}, "licenses": [], "categories": [], "volumes": [], "images": entries, "annotations": []})
    )


def rect(r0, r1, c0, c1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture
def scene():
    """One image with every segmentation type; returns (image, annotations, truth dict)."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 1.0, (H, W)).astype(np.float32)
    c6 = rect(4, 12, 6, 20)
    travel = np.where(rect(14, 30, 2, 18), rng.uniform(1, 80, (H, W)), 0).astype(np.float32)
    outer, inner = rect(2, 20, 22, 38), rect(5, 10, 25, 30)
    entry0 = np.where(outer, rng.uniform(500, 600, (H, W)), np.inf)
    exit0 = np.where(outer, entry0 + 3.5, np.inf)
    entry1 = np.where(inner, entry0 + 10, np.inf)
    exit1 = np.where(inner, entry0 + 14.25, np.inf)
    kidney_right = rect(20, 30, 20, 30)
    polygons = [[24.0, 2.0, 30.0, 2.0, 30.0, 8.0, 24.0, 8.0], [32.0, 24.0, 38.0, 24.0, 35.0, 31.0]]
    annotations = [
        ann(45, binary(c6), descriptions=["sixth cervical vertebra"]),
        ann(3, travel_seg(travel)),
        ann(91, hits_seg([(entry0, exit0), (entry1, exit1)])),
        ann(2, binary(kidney_right)),
        ann(1000, polygons),
        ann(10173, binary(c6)),  # vertebrae_C6_cutoff_S: dropped by the reduction
        ann(23, binary(rect(0, 4, 0, 4))),  # kidney cyst: dropped by the reduction
        ann(5, binary(rect(0, 1, 0, 1))),  # 1 px < 0.1 % of 1280 px: dropped
        ann(6, binary(rect(0, 1, 0, 2))),  # 2 px: kept
        ann(7, binary(rect(0, 32, 0, 36))),  # 1152 px = 90 %: kept
        ann(8, binary(rect(0, 32, 0, 37))),  # over 90 %: dropped
    ]

    def f16(x):
        return x.astype(np.float16).astype(np.float32)

    hits_travel = np.zeros((H, W), np.float32)
    hits_travel[outer] += f16(exit0[outer]) - f16(entry0[outer])
    hits_travel[inner] += f16(exit1[inner]) - f16(entry1[inner])
    truth = {
        "c6": c6,
        "travel": np.where(travel > 0, travel.astype(np.float16).astype(np.float32), 0),
        "outer": outer,
        "hits_travel": hits_travel,
        "kidney_right": kidney_right,
        "polygon": _decode_any(polygons),
    }
    return image, annotations, truth


def test_full_categories_round_trip(tmp_path, scene):
    image, annotations, truth = scene
    write_case(tmp_path, "case", [(image, annotations)])
    (tmp_path / "train.txt").write_text("case.json\n")
    ds = FluoroSegDataset(tmp_path, split="train", image_size=None, categories="full")
    assert len(ds) == 1
    s = ds[0]
    np.testing.assert_array_equal(s["image"], image)
    assert s["labels"].tolist() == [45, 3, 91, 2, 1000, 10173, 23, 6, 7]
    assert s["valid"].all() and s["masks"].shape == (9, H, W)
    np.testing.assert_array_equal(s["masks"][0], truth["c6"])
    np.testing.assert_array_equal(s["masks"][1], truth["travel"] > 0)
    np.testing.assert_array_equal(s["travel"][1], truth["travel"])
    np.testing.assert_array_equal(s["masks"][2], truth["outer"])
    np.testing.assert_allclose(s["travel"][2], truth["hits_travel"], atol=1e-4)
    np.testing.assert_array_equal(s["masks"][4], truth["polygon"])
    assert s["has_travel"].tolist() == [False, True, True] + [False] * 6
    assert not s["travel"][0].any()
    for k, a in enumerate(a for a in annotations if a["category_id"] in s["labels"]):
        np.testing.assert_allclose(s["bboxes"][k], a["bbox"])
    assert s["descriptions"][0] == ["sixth cervical vertebra"]  # stored on the annotation
    assert s["descriptions"][1] == list(text.describe(3))  # filled in
    assert s["original_size"].tolist() == [H, W]
    assert s["camera"] == {"focal_length": 1000.0, "pixel_size": [0.5, 0.5]}
    assert s["file_name"].endswith("case/0000000000.tiff")
    assert ds[-1]["file_name"] == s["file_name"]
    with pytest.raises(IndexError):
        ds[1]


def test_reduced_classes_merge_and_filter(tmp_path, scene):
    image, annotations, truth = scene
    write_case(tmp_path, "case", [(image, annotations)])
    (tmp_path / "train.txt").write_text("case.json\n")
    s = FluoroSegDataset(tmp_path, image_size=None)[0]
    assert s["masks"].shape == (57, H, W) and s["labels"].tolist() == list(range(57))
    present = {REDUCED_NAMES[i] for i in np.flatnonzero(s["valid"])}
    assert present == {"vertebrae_C", "kidney", "skull", "tool", "stomach", "pancreas"}
    kidney = REDUCED_NAMES.index("kidney")
    np.testing.assert_array_equal(s["masks"][kidney], (truth["travel"] > 0) | truth["kidney_right"])
    np.testing.assert_array_equal(s["travel"][kidney], truth["travel"])
    assert s["has_travel"][kidney] and not s["has_travel"][REDUCED_NAMES.index("tool")]
    np.testing.assert_array_equal(s["masks"][REDUCED_NAMES.index("vertebrae_C")], truth["c6"])
    rows, cols = np.flatnonzero(s["masks"][kidney].any(1)), np.flatnonzero(s["masks"][kidney].any(0))
    np.testing.assert_allclose(s["bboxes"][kidney], [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]])
    assert s["descriptions"][kidney] == list(text.describe_reduced(kidney))
    assert s["descriptions"][REDUCED_NAMES.index("liver")] == [] and not s["masks"][REDUCED_NAMES.index("liver")].any()
    # area bounds off: the 1 px liver and the > 90 % adrenal mask come back
    s = FluoroSegDataset(tmp_path, image_size=None, min_area=None, max_area=None)[0]
    assert s["valid"][REDUCED_NAMES.index("liver")] and s["valid"][REDUCED_NAMES.index("adrenal_gland")]


def test_resizing(tmp_path, scene):
    image, annotations, truth = scene
    write_case(tmp_path, "case", [(image, annotations)])
    (tmp_path / "train.txt").write_text("case.json\n")
    s = FluoroSegDataset(tmp_path, image_size=(16, 20), categories="full")[0]
    # halving: bilinear at pixel centres averages 2 x 2 blocks; nearest picks the odd pixels
    np.testing.assert_allclose(s["image"], image.reshape(16, 2, 20, 2).mean(axis=(1, 3)), rtol=1e-6)
    np.testing.assert_array_equal(s["masks"][0], truth["c6"][1::2, 1::2])
    np.testing.assert_array_equal(s["travel"][1], truth["travel"][1::2, 1::2])
    np.testing.assert_allclose(s["bboxes"][0], np.array(annotations[0]["bbox"]) / 2)
    assert s["original_size"].tolist() == [H, W]
    up = FluoroSegDataset(tmp_path, image_size=(64, 80), categories="full")[0]
    np.testing.assert_array_equal(up["masks"][0], np.repeat(np.repeat(truth["c6"], 2, 0), 2, 1))


def _tiny_cases(root, n, **kw):
    for c in range(n):
        write_case(
            root,
            f"case_{c:02d}",
            [(np.full((8, 8), c + 1.0, np.float32), [ann(1, binary(rect(0, 4, 0, 4, 8, 8)))])],
            **kw,
        )


def test_splits(tmp_path):
    _tiny_cases(tmp_path, 10)
    train, val = FluoroSegDataset(tmp_path, "train"), FluoroSegDataset(tmp_path, "val")
    assert [s["image"][0, 0] for s in train] == [float(c + 1) for c in range(9)]
    assert [s["image"][0, 0] for s in val] == [10.0]
    (tmp_path / "train.txt").write_text("case_03.json\n\ncase_01.json\n")
    (tmp_path / "val.txt").write_text("case_05.json\n")
    assert [s["image"][0, 0] for s in FluoroSegDataset(tmp_path, "train", image_size=None)] == [4.0, 2.0]
    assert len(FluoroSegDataset(tmp_path, "val")) == 1
    (tmp_path / "val.txt").unlink()
    assert len(FluoroSegDataset(tmp_path, "val")) == 0  # one split file: no 90 % fallback
    (tmp_path / "val.txt").write_text("case_01.json\n")
    with pytest.raises(ValueError, match="also listed"):
        FluoroSegDataset(tmp_path, "train")


def test_case_without_image_folder_is_skipped(tmp_path):
    _tiny_cases(tmp_path, 3)
    for p in (tmp_path / "case_01").iterdir():
        p.unlink()
    (tmp_path / "case_01").rmdir()
    (tmp_path / "train.txt").write_text("case_00.json\ncase_01.json\ncase_02.json\n")
    assert len(FluoroSegDataset(tmp_path)) == 2


def test_grad_ncc_filter(tmp_path):
    image = np.ones((8, 8), np.float32)
    write_case(tmp_path, "c", [(image, [])] * 3, extra_entry={0: {"grad_ncc": 0.2}, 1: {"grad_ncc": 0.8}})
    (tmp_path / "train.txt").write_text("c.json\n")
    assert len(FluoroSegDataset(tmp_path)) == 3
    ds = FluoroSegDataset(tmp_path, min_grad_ncc=0.5)
    assert [s["image_info"]["id"] for s in ds] == [1, 2]


def test_fluoroseg_empty_hits_layer(tmp_path):
    empty = np.zeros((8, 8), bool)
    seg = {"size": [8, 8], "counts": [_rle(empty)], "hits": ["", ""]}
    write_case(tmp_path, "c", [(np.ones((8, 8), np.float32), [ann(91, seg)])])
    (tmp_path / "train.txt").write_text("c.json\n")
    s = FluoroSegDataset(tmp_path, image_size=None, categories="full", min_area=None)[0]
    assert s["labels"].tolist() == [91] and not s["valid"][0] and not s["masks"].any()


# -- errors ------------------------------------------------------------------------------------


def _one_image(tmp_path, annotations=None, image=None):
    image = np.ones((8, 8), np.float32) if image is None else image
    write_case(
        tmp_path, "c", [(image, [ann(1, binary(rect(0, 4, 0, 4, 8, 8)))] if annotations is None else annotations)]
    )
    (tmp_path / "train.txt").write_text("c.json\n")
    return tmp_path / "c" / "0000000000"


def test_missing_files_raise_naming_the_file(tmp_path):
    stem = _one_image(tmp_path)
    stem.with_suffix(".tiff").unlink()
    with pytest.raises(FileNotFoundError, match="0000000000.tiff"):
        FluoroSegDataset(tmp_path)[0]
    _one_image(tmp_path)
    stem.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="0000000000.json"):
        FluoroSegDataset(tmp_path)[0]
    (tmp_path / "train.txt").write_text("c.json\nmissing.json\n")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        FluoroSegDataset(tmp_path)


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (lambda stem: stem.with_suffix(".tiff").write_bytes(b"II*\x00garbage"), "corrupt TIFF"),
        (lambda stem: tifffile.imwrite(stem.with_suffix(".tiff"), np.ones((8, 8))), "float32"),
        (lambda stem: tifffile.imwrite(stem.with_suffix(".tiff"), np.ones((8, 9), np.float32)), "8 x 9"),
        (lambda stem: stem.with_suffix(".json").write_text('[{"category_id": 1, "segm'), "corrupt annotation"),
        (
            lambda stem: stem.with_suffix(".json").write_text(json.dumps([ann(1, binary(rect(0, 4, 0, 4, 9, 8)))])),
            "does not match the image size",
        ),
        (
            lambda stem: stem.with_suffix(".json").write_text(
                json.dumps(
                    [{"category_id": 1, "segmentation": {"size": [8, 8], "counts": _rle(rect(0, 4, 0, 4, 4, 4))}}]
                )
            ),
            "cover",
        ),
        (
            lambda stem: stem.with_suffix(".json").write_text(
                json.dumps(
                    [
                        {
                            "category_id": 1,
                            "segmentation": {
                                "size": [8, 8],
                                "counts": _rle(rect(0, 4, 0, 4, 8, 8)),
                                "travel": _f16(np.ones(3)),
                            },
                        }
                    ]
                )
            ),
            "holds 3 values",
        ),
        (
            lambda stem: stem.with_suffix(".json").write_text(
                json.dumps([{"category_id": 1, "segmentation": {"size": [8, 8], "rle": "x"}}])
            ),
            "unknown segmentation type",
        ),
        (
            lambda stem: stem.with_suffix(".json").write_text(json.dumps([{"category_id": "1", "segmentation": []}])),
            "category_id",
        ),
    ],
)
def test_corrupt_files_raise_naming_the_file(tmp_path, corrupt, match):
    stem = _one_image(tmp_path)
    corrupt(stem)
    ds = FluoroSegDataset(tmp_path, categories="full")
    with pytest.raises(ValueError, match=match) as info:
        ds[0]
    assert "0000000000" in str(info.value)


def test_corrupt_case_file(tmp_path):
    _one_image(tmp_path)
    (tmp_path / "c.json").write_text('{"images": [{"file_name": "0000000000.tiff", "height": 8,')
    with pytest.raises(ValueError, match="c.json: corrupt case file"):
        FluoroSegDataset(tmp_path)
    with pytest.warns(RuntimeWarning, match=r"c.json.*1 skipped so far"):
        ds = FluoroSegDataset(tmp_path, on_error="skip")
    assert len(ds) == 0 and ds.num_skipped == 1


@pytest.mark.parametrize("name", ["../outside.tiff", "/etc/passwd", "sub/../../x.tiff", "..\\x.tiff", "C:/x.tiff"])
def test_paths_leaving_the_root_are_refused(tmp_path, name):
    _one_image(tmp_path)
    case = json.loads((tmp_path / "c.json").read_text())
    case["images"][0]["file_name"] = name
    (tmp_path / "c.json").write_text(json.dumps(case))
    for on_error in ("raise", "skip"):
        with pytest.raises(UnsafePathError, match="refusing"):
            FluoroSegDataset(tmp_path, on_error=on_error)


def test_split_entries_leaving_the_root_are_refused(tmp_path):
    _one_image(tmp_path)
    (tmp_path / "train.txt").write_text("../c.json\n")
    with pytest.raises(UnsafePathError, match="train.txt"):
        FluoroSegDataset(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        FluoroSegDataset(".", split="test")
    with pytest.raises(ValueError, match="categories"):
        FluoroSegDataset(".", categories="all")
    with pytest.raises(ValueError, match="image_size"):
        FluoroSegDataset(".", image_size=(0, 4))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        FluoroSegDataset("/nonexistent/fluoroseg")


# -- batches -----------------------------------------------------------------------------------


def _batch_dataset(root, n=7):
    rng = np.random.default_rng(1)
    images = []
    for i in range(n):
        annotations = [ann(1 + k, binary(rect(k, k + 5, i, i + 6, 16, 16))) for k in range(1 + i % 3)]
        images.append((rng.uniform(0.1, 1, (16, 16)).astype(np.float32), annotations))
    write_case(root, "c", images)
    (root / "train.txt").write_text("c.json\n")


def test_batches_have_fixed_shapes_and_match_samples(tmp_path):
    _batch_dataset(tmp_path)
    ds = FluoroSegDataset(tmp_path, image_size=(8, 8))
    batches = list(ds.batches(3))
    assert len(batches) == 2
    for b in batches:
        assert (
            b["image"].shape == (3, 8, 8) and b["masks"].shape == (3, 57, 8, 8) and b["travel"].shape == (3, 57, 8, 8)
        )
        assert b["valid"].shape == (3, 57) and b["bboxes"].shape == (3, 57, 4) and len(b["descriptions"]) == 3
    np.testing.assert_array_equal(batches[1]["masks"][2], ds[5]["masks"])
    assert [b["image"].shape[0] for b in ds.batches(3, drop_last=False)] == [3, 3, 1]
    sync = list(ds.batches(2, prefetch=0, drop_last=False))
    threaded = list(ds.batches(2, prefetch=3, drop_last=False))
    for a, b in zip(sync, threaded, strict=True):
        np.testing.assert_array_equal(a["masks"], b["masks"])
        np.testing.assert_array_equal(a["image"], b["image"])


def test_shuffled_batches_are_deterministic(tmp_path):
    _batch_dataset(tmp_path)
    ds = FluoroSegDataset(tmp_path, image_size=(8, 8))

    def order(seed):
        return [f for b in ds.batches(1, shuffle=True, seed=seed) for f in b["image_info"]]

    ids = [e["id"] for e in order(3)]
    assert ids == [e["id"] for e in order(3)] and sorted(ids) == list(range(7))
    assert ids == np.random.default_rng(3).permutation(7).tolist()


def test_full_category_batches_are_padded(tmp_path):
    _batch_dataset(tmp_path)
    ds = FluoroSegDataset(tmp_path, image_size=(16, 16), categories="full")
    b = next(iter(ds.batches(3, max_objects=4)))
    assert b["masks"].shape == (3, 4, 16, 16)
    assert b["valid"].tolist() == [[True, False, False, False], [True, True, False, False], [True, True, True, False]]
    assert b["labels"].tolist() == [[1, 0, 0, 0], [1, 2, 0, 0], [1, 2, 3, 0]]
    assert b["descriptions"][0][1:] == [[], [], []]
    with pytest.raises(ValueError, match="max_objects"):
        next(iter(ds.batches(3)))
    with pytest.raises(ValueError, match="3 objects exceed max_objects=2"):
        list(ds.batches(3, max_objects=2))


def test_batches_raise_or_skip_bad_samples(tmp_path):
    _batch_dataset(tmp_path, n=5)
    (tmp_path / "c" / "0000000002.tiff").unlink()
    ds = FluoroSegDataset(tmp_path, image_size=(8, 8))
    with pytest.raises(FileNotFoundError, match="0000000002.tiff"):
        list(ds.batches(2))
    ds = FluoroSegDataset(tmp_path, image_size=(8, 8), on_error="skip")
    with pytest.warns(RuntimeWarning, match=r"0000000002.tiff.*1 skipped so far"):
        batches = list(ds.batches(2, drop_last=False))
    assert [e["id"] for b in batches for e in b["image_info"]] == [0, 1, 3, 4] and ds.num_skipped == 1


def test_stopping_early_ends_the_prefetch_thread(tmp_path):
    _batch_dataset(tmp_path)
    ds = FluoroSegDataset(tmp_path, image_size=(8, 8))
    before = threading.active_count()
    it = ds.batches(1, prefetch=1)
    next(it)
    assert threading.active_count() == before + 1
    it.close()
    assert threading.active_count() == before
