"""Independent compiled Siddon reference (numba, parallel over rays): the "compiled C figure".

Exact line integrals of a piecewise-constant volume: voxel (i, j, k) is the box of +/- half a
voxel around its centre ``affine @ [i, j, k, 1]`` (world mm) and holds ``data[i, j, k]``. Each
ray is the segment from its source to its target (world mm); the parts outside the volume add
nothing. The traversal runs in voxel-index space (where the affine is undone, so the ray
parameter alpha in [0, 1] is the same in both spaces) with Amanatides-Woo stepping; every next
boundary is computed directly from its plane index in float64, never accumulated, and the
integral is accumulated in float64 and returned as float32 in (data units) x mm.

Benchmark-only dependency: numba (not a dependency of fluorojax), imported on first use. ``ap_view_rays`` builds the
benchmark geometry shared with ``peers_drr.py``.

Run ``python benchmarks/siddon_numba.py --help``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

CT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr.nii.gz"
SDD_MM = 1020.0
SOURCE_TO_ISOCENTER_MM = SDD_MM / 2.0
# name -> (pixels per side, pixel size mm): the two benchmark detectors.
SIZES = {200: (200, 2.0), 512: (512, 0.78)}
# world_from_camera rotation of the AP view (columns: camera x, y, z in RAS+ world): image
# columns run toward the patient's left (-x), rows toward inferior (-z), the beam anterior ->
# posterior (-y). The same matrix as fluorojax.camera.carm_pose(0, 0, ...) and nanodrr's "AP".
AP_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])


def grid_center(affine, shape):
    """(3,) float64 world mm: the centre of the voxel grid, ``affine @ [(n - 1) / 2, 1]``."""
    idx = (np.asarray(shape[:3], np.float64) - 1.0) / 2.0
    return np.asarray(affine, np.float64)[:3] @ np.append(idx, 1.0)


def ap_view_rays(isocenter, size, pixel_size, sdd=SDD_MM, source_to_isocenter=SOURCE_TO_ISOCENTER_MM):
    """Rays of the benchmark's AP view: (sources, targets), each (size, size, 3) float64 world mm.

    The source is ``source_to_isocenter`` mm anterior (+y) of ``isocenter`` (3,); the camera is
    a pinhole with its detector plane ``sdd`` mm from the source, ``size`` x ``size`` pixels of
    ``pixel_size`` mm, principal point at the detector centre; pixel (r, c) is hit at camera
    coordinates ((c + 0.5 - size / 2) * pixel_size, (r + 0.5 - size / 2) * pixel_size, sdd).
    """
    if size <= 0 or pixel_size <= 0 or sdd <= 0 or source_to_isocenter <= 0:
        raise ValueError(
            f"ap_view_rays: size, pixel_size, sdd and source_to_isocenter must be positive, got "
            f"{size}, {pixel_size}, {sdd}, {source_to_isocenter}"
        )
    source = np.asarray(isocenter, np.float64) + source_to_isocenter * (-AP_ROTATION[:, 2])
    offsets = (np.arange(size, dtype=np.float64) + 0.5 - size / 2.0) * pixel_size
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    camera = np.stack([u, v, np.full_like(u, sdd)], axis=-1)
    targets = source + camera @ AP_ROTATION.T
    sources = np.broadcast_to(source, targets.shape).copy()
    return sources, targets


@functools.cache
def _kernel():
    """The compiled traversal, built on first use so that importing this module (for its
    geometry helpers, as peers_drr.py's torch subprocesses do) does not load numba."""
    import numba

    @numba.njit(inline="always", error_model="numpy")
    def _first_voxel(p, d, a_in, n):
        """Index of the voxel a ray enters at alpha ``a_in`` along one axis, its step and next boundary."""
        x = p + a_in * d + 0.5
        if d < 0.0:
            i = np.int64(np.ceil(x)) - 1  # on a plane while descending: the voxel below
            step = -1
        else:
            i = np.int64(np.floor(x))
            step = 1
        i = min(max(i, 0), n - 1)
        nxt = np.inf if d == 0.0 else (i + 0.5 * step - p) / d
        return i, step, nxt

    @numba.njit(inline="always", error_model="numpy")
    def _slab(p, d, n, a_in, a_out):
        """Clip [a_in, a_out] to the alphas where p + alpha * d lies in [-0.5, n - 0.5]; empty: a_in >= a_out."""
        lo = -0.5
        hi = n - 0.5
        if d == 0.0:
            if p < lo or p > hi:
                return 1.0, 0.0
            return a_in, a_out
        t0 = (lo - p) / d
        t1 = (hi - p) / d
        if t0 > t1:
            t0, t1 = t1, t0
        return max(a_in, t0), min(a_out, t1)

    @numba.njit(parallel=True, error_model="numpy")
    def _traverse(data, p0s, d, lengths, out):
        """Siddon/Amanatides-Woo over rays p0s + alpha * d (voxel-index space, alpha in [0, 1])."""
        ni, nj, nk = data.shape
        for ray in numba.prange(p0s.shape[0]):
            px, py, pz = p0s[ray, 0], p0s[ray, 1], p0s[ray, 2]
            dx, dy, dz = d[ray, 0], d[ray, 1], d[ray, 2]
            a_in, a_out = _slab(px, dx, ni, 0.0, 1.0)
            a_in, a_out = _slab(py, dy, nj, a_in, a_out)
            a_in, a_out = _slab(pz, dz, nk, a_in, a_out)
            acc = 0.0
            if a_in < a_out:
                i, si, ai = _first_voxel(px, dx, a_in, ni)
                j, sj, aj = _first_voxel(py, dy, a_in, nj)
                k, sk, ak = _first_voxel(pz, dz, a_in, nk)
                a_cur = a_in
                while True:
                    a_end = min(ai, aj, ak, a_out)
                    acc += data[i, j, k] * (a_end - a_cur)
                    if a_end >= a_out:
                        break
                    a_cur = a_end
                    # Step every axis whose boundary is crossed here; each boundary is computed
                    # directly from its plane index (no drift from repeated addition).
                    if ai <= a_end:
                        i += si
                        ai = (i + 0.5 * si - px) / dx
                    if aj <= a_end:
                        j += sj
                        aj = (j + 0.5 * sj - py) / dy
                    if ak <= a_end:
                        k += sk
                        ak = (k + 0.5 * sk - pz) / dz
                    if i < 0 or i >= ni or j < 0 or j >= nj or k < 0 or k >= nk:
                        break
            out[ray] = acc * lengths[ray]

    return _traverse


def siddon_numba(data, affine, sources, targets):
    """Exact line integrals (...,) float32, (data units) x mm, of segments through a volume.

    data: (I, J, K) voxel values; affine: (4, 4) world_from_voxel (voxel centres at integer
    indices, world mm); sources, targets: (..., 3) world mm, broadcast against each other.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"siddon_numba: data must be 3-D (I, J, K), got shape {data.shape}")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"siddon_numba: affine must be a finite invertible (4, 4) matrix, got {affine.tolist()}")
    sources, targets = np.broadcast_arrays(np.asarray(sources, np.float64), np.asarray(targets, np.float64))
    if sources.shape[-1:] != (3,):
        raise ValueError(f"siddon_numba: sources and targets must be (..., 3) world mm, got {sources.shape}")
    batch = sources.shape[:-1]
    s = sources.reshape(-1, 3)
    t = targets.reshape(-1, 3)
    lengths = np.linalg.norm(t - s, axis=-1)
    if np.any(lengths == 0):
        raise ValueError("siddon_numba: every ray needs a target distinct from its source (zero-length ray)")
    voxel_from_world = np.linalg.inv(affine)
    p0 = s @ voxel_from_world[:3, :3].T + voxel_from_world[:3, 3]
    d = (t - s) @ voxel_from_world[:3, :3].T
    out = np.empty(s.shape[0], np.float64)
    _kernel()(np.ascontiguousarray(data, np.float32), np.ascontiguousarray(p0), np.ascontiguousarray(d), lengths, out)
    return out.astype(np.float32).reshape(batch)


def load_ct(path=CT_PATH):
    """(data (I, J, K) float32 raw CT values, affine (4, 4) float64) from a NIfTI file."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CT volume not found: {path} (expected the shared cxr.nii.gz)")
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, np.float64)


def machine_info():
    """dict: CPU model, logical cores, memory, platform."""
    model = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    except OSError:
        mem_kb = None
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "memory_gb": None if mem_kb is None else round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def benchmark(size, repeats=5, threads=2, ct=CT_PATH, ray_order="rows"):
    """Time ``siddon_numba`` on the AP view at ``size`` (200 or 512): one warm-up, ``repeats`` runs.

    ``ray_order`` "rows" processes the rays as the image is laid out (column index fastest);
    "columns" processes the same rays with the row index fastest, which for this CT and view
    walks neighbouring rays through neighbouring memory (the volume's last axis, S, runs down
    the image) and so shows the traversal's cost with good cache reuse. Returns a dict: impl,
    size, mode, ray_order, threads, first_s (warm-up, with compilation the first time),
    median_s, times_s (wall), median_cpu_s (process CPU time, all threads), image (H, W).
    """
    import numba

    if size not in SIZES:
        raise ValueError(f"benchmark: size must be one of {sorted(SIZES)}, got {size}")
    if ray_order not in ("rows", "columns"):
        raise ValueError(f"benchmark: ray_order must be 'rows' or 'columns', got {ray_order!r}")
    numba.set_num_threads(threads)
    data, affine = load_ct(ct)
    n_pixels, pixel = SIZES[size]
    sources, targets = ap_view_rays(grid_center(affine, data.shape), n_pixels, pixel)
    if ray_order == "columns":
        sources, targets = sources.transpose(1, 0, 2), targets.transpose(1, 0, 2)
    start = time.perf_counter()
    image = siddon_numba(data, affine, sources, targets)
    first = time.perf_counter() - start
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        siddon_numba(data, affine, sources, targets)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "impl": "siddon-numba",
        "size": size,
        "mode": "forward",
        "ray_order": ray_order,
        "threads": threads,
        "first_s": first,
        "median_s": statistics.median(wall),
        "times_s": wall,
        "median_cpu_s": statistics.median(cpu),
        "image": image.T if ray_order == "columns" else image,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ct", default=str(CT_PATH), help="NIfTI CT (default: shared cxr.nii.gz)")
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=sorted(SIZES),
        choices=sorted(SIZES),
        help="detector sizes to time: 200 (2.0 mm pixels) and/or 512 (0.78 mm pixels)",
    )
    parser.add_argument(
        "--ray-order",
        nargs="+",
        default=["rows", "columns"],
        choices=["rows", "columns"],
        help="order(s) in which the rays are processed (see benchmark())",
    )
    parser.add_argument("--threads", type=int, default=2, help="numba threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--save-images", metavar="DIR", help="save each image as DIR/siddon-numba-<size>.npy")
    args = parser.parse_args(argv)

    import numba

    rows = []
    for size in args.size:
        for order in args.ray_order:
            row = benchmark(size, args.repeats, args.threads, args.ct, order)
            image = row.pop("image")
            rows.append(row)
            print(
                f"siddon-numba {size}x{size} rays by {order}: median {row['median_s']:.4f} s wall, "
                f"{row['median_cpu_s']:.4f} s CPU over {args.repeats} (warm-up {row['first_s']:.2f} s), "
                f"image range [{image.min():.4g}, {image.max():.4g}]",
                flush=True,
            )
        if args.save_images:
            Path(args.save_images).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.save_images) / f"siddon-numba-{size}.npy", image)
    if args.json:
        record = {
            "machine": machine_info(),
            "numba": numba.__version__,
            "numpy": np.__version__,
            "ct": args.ct,
            "geometry": {
                "view": "AP",
                "sdd_mm": SDD_MM,
                "source_to_isocenter_mm": SOURCE_TO_ISOCENTER_MM,
                "isocenter": "centre of the voxel grid",
            },
            "results": rows,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
