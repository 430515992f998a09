"""Peer DRR renderers on the GPU, for bench_gpu.py: nanodrr 0.1.7 (Triton backend) and DiffDRR
0.6.1 (Siddon and trilinear), on the benchmark view of benchmarks/peers_drr.py.

Run by bench_gpu.py in a child process (torch and JAX then do not share one process's GPU
memory pools); prints one JSON object: {"versions": {...}, "rows": [...], "errors": [...]}.

    python3 benchmarks/gpu/peers_gpu.py --ct CT.nii.gz --sizes 200 512 --device cuda --images DIR

The view and the mapping of each peer's pose and detector onto fluorojax's camera are those of
benchmarks/peers_drr.py (benchmarks/README.md, "Geometry"): AP, source 510 mm anterior of the
grid centre, detector 1020 mm from the source, raw CT values, images [row, col] as line integrals
in (CT units) x mm, directly comparable with ``fluorojax.render``. Here every peer runs on
``--device`` (nanodrr with ``backend="triton"`` on CUDA, ``"torch"`` elsewhere), the timing
synchronises the device around each call, and ``forward+backward`` back-propagates the image
sum to the pose parameters (rotation and translation tensors).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path

SDD_MM = 1020.0
SOURCE_TO_ISOCENTER_MM = 510.0
PIXEL_MM = {200: 2.0, 512: 0.78}  # the two benchmark detectors; other sizes keep 400 mm across
STUBS = Path(__file__).resolve().parent / "stubs"


def _simpleitk_note():
    """Import SimpleITK, or put the stub on the path (see stubs/SimpleITK); a note for the output."""
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(STUBS))
        return "SimpleITK stub (not carried; unused on these paths)"
    return None


def _scalar_image(data, affine):
    import torch
    from torchio import ScalarImage

    return ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)


def build_nanodrr(data, affine, size, pixel, device, n_samples):
    """nanodrr on ``device``: (render(rotation deg, translation) -> (H, W), rotation, translation)."""
    import torch
    from nanodrr.camera import make_rt_inv
    from nanodrr.data import Subject
    from nanodrr.drr import DRR

    subject = Subject.from_images(_scalar_image(data, affine), convert_to_mu=False).to(device)
    drr = DRR.from_carm_intrinsics(
        sdd=SDD_MM, delx=pixel, dely=pixel, x0=0.0, y0=0.0, height=size, width=size, dtype=torch.float32
    ).to(device)
    backend = "triton" if torch.device(device).type == "cuda" else "torch"

    def render(rotation, translation):
        rt_inv = make_rt_inv(rotation, translation, orientation="AP", isocenter=subject.isocenter)
        return drr(subject, rt_inv, n_samples=n_samples, backend=backend)[0, 0]

    rotation = torch.zeros(1, 3, device=device)
    translation = torch.tensor([[0.0, SOURCE_TO_ISOCENTER_MM, 0.0]], device=device)
    return render, rotation, translation, f"nanodrr ({backend}, {n_samples} samples)"


def build_diffdrr(data, affine, size, pixel, device, renderer, n_samples):
    """DiffDRR on ``device``: (render(rotation rad, translation) -> (H, W), rotation, translation)."""
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR

    subject = read(_scalar_image(data, affine), orientation="AP")
    drr = DRR(subject, sdd=SDD_MM, height=size, delx=pixel, renderer=renderer, reverse_x_axis=True)
    drr.density = torch.from_numpy(data)
    drr = drr.to(device)
    kwargs = {"n_points": n_samples} if renderer == "trilinear" else {}

    def render(rotation, translation):
        return drr(rotation, translation, parameterization="euler_angles", convention="ZXY", **kwargs)[0, 0]

    rotation = torch.zeros(1, 3, device=device)
    translation = torch.tensor([[0.0, SOURCE_TO_ISOCENTER_MM, 0.0]], device=device)
    label = f"DiffDRR {renderer}" + (f" ({n_samples} samples)" if renderer == "trilinear" else "")
    return render, rotation, translation, label


def time_peer(render, rotation, translation, mode, device, repeats):
    """(first s, median s, image) of one peer and mode, synchronising ``device`` around each call."""
    import torch

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    def once():
        if mode == "forward":
            with torch.inference_mode():
                return render(rotation, translation)
        rot = rotation.clone().requires_grad_(True)
        trans = translation.clone().requires_grad_(True)
        image = render(rot, trans)
        image.sum().backward()
        return image.detach()

    sync()
    start = time.perf_counter()
    image = once()
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = once()
        sync()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct", required=True, help="NIfTI CT (raw values are rendered)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 512])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--budget-s", type=float, default=150.0, help="stop starting new measurements after this")
    parser.add_argument("--images", help="save each forward image as DIR/<peer>-<size>.npy")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    note = _simpleitk_note()

    import nibabel as nib
    import numpy as np
    import torch

    image = nib.load(args.ct)
    data, affine = np.asarray(image.dataobj, np.float32), np.asarray(image.affine, np.float64)
    out = {
        "versions": {name: _version(name) for name in ("torch", "triton", "nanodrr", "diffdrr", "torchio")},
        "device": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else args.device,
        "notes": [n for n in [note] if n],
        "rows": [],
        "errors": [],
    }
    peers = ("nanodrr", "diffdrr-siddon", "diffdrr-trilinear")
    for size in args.sizes:
        pixel = PIXEL_MM.get(size, 400.0 / size)
        for peer in peers:
            for mode in ("forward", "forward+backward"):
                if time.perf_counter() - start > args.budget_s:
                    out["errors"].append(f"{peer} {size} {mode}: not run, budget of {args.budget_s:.0f} s spent")
                    continue
                try:
                    if peer == "nanodrr":
                        built = build_nanodrr(data, affine, size, pixel, args.device, args.n_samples)
                    else:
                        built = build_diffdrr(
                            data, affine, size, pixel, args.device, peer.split("-")[1], args.n_samples
                        )
                    render, rotation, translation, label = built
                    first, median, img = time_peer(render, rotation, translation, mode, args.device, args.repeats)
                except Exception as error:  # noqa: BLE001  a peer that fails is a row that says why, not a lost run
                    out["errors"].append(f"{peer} {size} {mode}: {type(error).__name__}: {str(error)[:300]}")
                    continue
                finally:
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                out["rows"].append(
                    {
                        "peer": peer,
                        "label": label,
                        "size": size,
                        "mode": mode,
                        "first_s": first,
                        "median_s": median,
                        "repeats": args.repeats,
                    }
                )
                if args.images and mode == "forward":
                    np.save(Path(args.images) / f"{peer}-{size}.npy", img.float().cpu().numpy())
    print(json.dumps(out))


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
