"""Core renderer benchmark: fluorojax against DiffDRR, nanodrr and compiled Siddons, one run.

    python benchmarks/bench_render.py [--sizes 200 512] [--peers] [--gpu-path] [--cpu-devices N] [--json benchmarks/results/render.json]

Geometry (issue 2): the full chest CT of ../shared/data (512 x 512 x 133), AP view, source
510 mm anterior of the grid centre, source-to-detector 1020 mm, 200 x 200 pixels of 2 mm and
512 x 512 pixels of 0.78 mm. Every configuration runs in a fresh subprocess: one warm-up
(compilation), then ``--repeats`` timed runs, median reported. "forward" renders the image;
"forward+backward" also takes the gradient of the image sum with respect to the pose (a
6-vector se(3) increment). Peak memory is the child's resident-set high-water mark during the
renders (VmHWM after a reset once the CT is loaded) and over the whole process (ru_maxrss).
fluorojax renders the raw HU values, as the peers do, so all images are comparable; each
image is checked against the numba Siddon reference (max relative error over pixels).

The compiled C Siddon of ../shared/tools/siddon-ref (OpenMP, two threads, built with its
build.sh into a temporary folder) runs inside the fluorojax Siddon children, alternating with
fluorojax run by run (A, B, A, B, ...) so that load from other processes hits both alike; its
rows report the medians of those runs. ``--gpu-path`` also times, for information, the loop-free
Siddon that fluorojax uses on GPUs (``siddon_slab``), forced onto this CPU. ``--cpu-devices N``
starts every fluorojax child with N CPU devices (``jax_num_cpu_devices``, set before JAX starts),
over which the CPU Siddon splits its rays; with N > 1 the Siddon children also time the one-device
traversal (``impl="traversal"``, the program without the split) and the split with the volume
placed on every CPU device once (``cpu_devices.replicate``; as loaded, it is copied to the other
devices at every call) in the same rotation (split, one device, split placed, C, split, ...), so
all the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from siddon_numba import CT_PATH, SDD_MM, SIZES, SOURCE_TO_ISOCENTER_MM, machine_info  # noqa: E402

METHODS = ("siddon", "trilinear")
MODES = ("forward", "forward+backward")
SIDDON_REF = os.path.join(HERE, "..", "..", "shared", "tools", "siddon-ref")
REF_THREADS = 2


def _vmhwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def c_siddon(build_dir, volume, sources, targets):
    """A function running the C reference Siddon on rays (..., 3) world mm; returns (...,)."""
    import ctypes

    import numpy as np

    os.environ["OMP_NUM_THREADS"] = str(REF_THREADS)  # read when the library loads
    # idle OpenMP threads sleep instead of spinning, so they leave the cores to the fluorojax run
    # that alternates with the C (its regions are one call each: spinning gains it nothing)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    script = os.path.join(build_dir, "build.sh")
    lib_path = (
        subprocess.run(
            ["bash", script, os.path.join(os.environ.get("TMPDIR", "/tmp"), "siddon-ref")],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    lib = ctypes.CDLL(lib_path)
    affine = np.asarray(volume.affine, np.float64)
    if np.count_nonzero(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("the C reference Siddon needs a diagonal affine")
    index_from_world = np.linalg.inv(affine)
    spacing = np.abs(np.diag(affine)[:3])

    def frame(points):  # world mm -> the reference's frame: (voxel index + 0.5) * spacing
        points = np.asarray(points, np.float64).reshape(-1, 3)
        return np.ascontiguousarray((points @ index_from_world[:3, :3].T + index_from_world[:3, 3] + 0.5) * spacing)

    data = np.ascontiguousarray(np.asarray(volume.data, np.float32))
    src, dst = frame(sources), frame(np.broadcast_to(targets, np.shape(targets)))
    out = np.zeros(src.shape[0])
    double_p = ctypes.POINTER(ctypes.c_double)

    def run():
        lib.siddon(
            data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            *data.shape,
            spacing.ctypes.data_as(double_p),
            src.ctypes.data_as(double_p),
            dst.ctypes.data_as(double_p),
            src.shape[0],
            out.ctypes.data_as(double_p),
        )
        return out.reshape(np.shape(targets)[:-1])

    return run


def _one_device_render(camera, volume, pose):
    """fluorojax's Siddon on one device (the traversal without the split over CPU devices)."""
    from fluorojax.raycast import drr, siddon

    return drr._render(volume, camera, pose, "siddon", 500, siddon.DEFAULT_CHUNK, "traversal")


def child(method, size, mode, repeats, save, ct, siddon_ref, cpu_devices=1):
    """One configuration in this process; prints JSON lines (fluorojax's, then, for the Siddon with
    ``cpu_devices`` > 1, the split with the volume placed on every device once and the one-device
    traversal, then the C reference's when ``siddon_ref`` is a folder)."""
    import resource

    import jax

    jax.config.update("jax_num_cpu_devices", cpu_devices)
    import jax.numpy as jnp
    import numpy as np

    import fluorojax as fj
    from fluorojax.raycast import drr, siddon
    from fluorojax.transforms import se3_exp

    volume = fj.load_volume(ct)
    pixels, pixel_size = SIZES[size]
    camera = fj.Camera(pixels, pixels, pixel_size, SDD_MM)
    pose = fj.carm_pose(0.0, 0.0, SOURCE_TO_ISOCENTER_MM, volume.center)
    if method == "siddon-gpu-path":  # the GPU implementation, forced onto the CPU
        render = lambda v, p: drr._render(v, camera, p, "siddon", 500, siddon.DEFAULT_CHUNK, "slab")  # noqa: E731
    else:
        render = lambda v, p: fj.render(v, camera, p, method)  # noqa: E731

    def timed(render, volume=volume):
        if mode == "forward":
            fn = jax.jit(render)
            return lambda: fn(volume, pose)
        grad = jax.jit(jax.value_and_grad(lambda w, v: jnp.sum(render(v, pose @ se3_exp(w)))))
        return lambda: grad(jnp.zeros(6), volume)

    run = timed(render)
    one_device = placed = None
    if method == "siddon" and cpu_devices > 1:
        from fluorojax.raycast.cpu_devices import replicate

        one_device = timed(functools.partial(_one_device_render, camera))
        jax.block_until_ready(one_device())
        placed = timed(render, replicate(volume))
        jax.block_until_ready(placed())
    reference = c_siddon(siddon_ref, volume, *camera.rays(pose)) if siddon_ref else None
    reset = _reset_hwm()
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    first = time.perf_counter() - t0
    times, one_times, placed_times, ref_times = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(run())
        times.append(time.perf_counter() - t0)
        if one_device is not None:
            t0 = time.perf_counter()
            jax.block_until_ready(one_device())
            one_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(placed())
            placed_times.append(time.perf_counter() - t0)
        if reference is not None:
            t0 = time.perf_counter()
            reference()
            ref_times.append(time.perf_counter() - t0)
    if save and mode == "forward":
        np.save(save, np.asarray(out))
    print(
        json.dumps(
            {
                "impl": f"fluorojax-{method}",
                "size": size,
                "mode": mode,
                "first_s": first,
                "median_s": statistics.median(times),
                "times_s": times,
                "peak_render_mb": _vmhwm_mb() if reset else None,
                "peak_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "jax": jax.__version__,
                "backend": jax.default_backend(),
                "cpu_devices": jax.device_count("cpu"),
            }
        )
    )
    if one_device is not None:
        for impl, runs in (
            (f"fluorojax-siddon ({cpu_devices} devices, volume placed on all once)", placed_times),
            (f"fluorojax-siddon (1 device, alternating with {cpu_devices} devices)", one_times),
        ):
            print(
                json.dumps(
                    {"impl": impl, "size": size, "mode": mode, "median_s": statistics.median(runs), "times_s": runs}
                )
            )
    if reference is not None:
        if save:
            np.save(save.replace(".npy", "-c.npy"), reference().astype(np.float32))
        print(
            json.dumps(
                {
                    "impl": f"siddon-ref C ({REF_THREADS} threads, alternating with fluorojax {mode})",
                    "size": size,
                    "mode": "forward",
                    "median_s": statistics.median(ref_times),
                    "times_s": ref_times,
                }
            )
        )


def _run_child(args_list, timeout=1800):
    out = subprocess.run(args_list, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args_list)} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.strip().splitlines() if line.startswith("{")]


def _max_rel_error(image_path, reference):
    import numpy as np

    image = np.load(image_path).astype(np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(image - reference).max() / scale)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 512], choices=sorted(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--gpu-path", action="store_true", help="also time the GPU Siddon (siddon_slab) on this CPU")
    parser.add_argument("--ct", default=str(CT_PATH), help="the CT (default: the shared cxr.nii.gz)")
    parser.add_argument("--siddon-ref", default=SIDDON_REF, help="folder of the C reference Siddon ('' to skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cpu-devices", type=int, default=1, help="CPU devices of every fluorojax child (the Siddon splits its rays)"
    )
    parser.add_argument("--peers", action="store_true", help="also run DiffDRR and nanodrr from .venv-peers")
    parser.add_argument("--peer-python", default=os.path.join(HERE, "..", ".venv-peers", "bin", "python"))
    parser.add_argument("--peer-list", default="diffdrr-siddon,diffdrr-trilinear,nanodrr")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "render.json"))
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "SIZE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(
            args.child[0],
            int(args.child[1]),
            args.child[2],
            args.repeats,
            args.save,
            args.ct,
            args.siddon_ref,
            args.cpu_devices,
        )
        return

    import siddon_numba

    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    load_start = os.getloadavg()[0]
    rows = []
    images = os.path.join(os.path.dirname(args.json), "images")
    os.makedirs(images, exist_ok=True)
    for size in args.sizes:
        for order in ("rows", "columns"):
            reference = siddon_numba.benchmark(size, repeats=args.repeats, ct=args.ct, ray_order=order)
            rows.append({k: v for k, v in reference.items() if k != "image"})
            rows[-1]["impl"] = f"siddon-numba ({order} order)"
            print(json.dumps(rows[-1]), flush=True)
        for method in args.methods + ["siddon-gpu-path"] * args.gpu_path:
            for mode in MODES:
                save = os.path.join(images, f"fluorojax-{method}-{size}.npy")
                with_c = args.siddon_ref if method == "siddon" else ""
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    method,
                    str(size),
                    mode,
                    "--repeats",
                    str(args.repeats),
                    "--save",
                    save,
                    "--ct",
                    args.ct,
                    "--siddon-ref",
                    with_c,
                    "--cpu-devices",
                    str(args.cpu_devices),
                ]
                for row in _run_child(cmd):
                    if mode == "forward" and row["impl"] == f"fluorojax-{method}":
                        row["max_rel_error_vs_reference"] = _max_rel_error(save, reference["image"])
                    elif row["impl"].startswith("siddon-ref") and mode == "forward":
                        row["max_rel_error_vs_reference"] = _max_rel_error(
                            save.replace(".npy", "-c.npy"), reference["image"]
                        )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        if args.peers:
            out = os.path.join(images, f"peers-{size}.json")
            cmd = [
                args.peer_python,
                os.path.join(HERE, "peers_drr.py"),
                "--size",
                str(size),
                "--which",
                args.peer_list,
                "--repeats",
                str(args.repeats),
                "--json",
                out,
                "--save-images",
                images,
            ]
            subprocess.run(cmd, check=True, timeout=7200)
            with open(out) as f:
                peer_rows = json.load(f)["results"]
            for row in peer_rows:
                image = os.path.join(images, f"{row['impl']}-{size}.npy")
                if row.get("mode") == "forward" and os.path.exists(image):
                    row["max_rel_error_vs_reference"] = _max_rel_error(image, reference["image"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = machine_info()
    machine["load_average_1min"] = [round(load_start, 1), round(os.getloadavg()[0], 1)]  # start, end: other processes
    with open(args.json, "w") as f:
        json.dump({"machine": machine, "results": rows}, f, indent=1)
    with open(args.json.replace(".json", ".md"), "w") as f:
        f.write(markdown(rows, machine))
    print(f"wrote {args.json} and its .md table")


def markdown(rows, machine):
    """One table per image size: time, ratio to fluorojax siddon, memory, image error."""
    lines = [f"Machine: {machine}", ""]
    for size in sorted({r["size"] for r in rows}):
        ours = {r["mode"]: r["median_s"] for r in rows if r["size"] == size and r["impl"] == "fluorojax-siddon"}
        lines += [
            f"### {size} x {size}",
            "",
            "| implementation | mode | median s | x fluorojax siddon | peak MB (render) | peak MB (process) | max rel. error vs exact |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["size"] == size):
            ratio = r["median_s"] / ours[r["mode"]] if r["mode"] in ours else float("nan")
            fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
            err = r.get("max_rel_error_vs_reference")
            lines.append(
                f"| {r['impl']} | {r['mode']} | {r['median_s']:.3f} | {ratio:.2f} | {fmt(r.get('peak_render_mb'))} | "
                f"{fmt(r.get('peak_process_mb'))} | {'-' if err is None else f'{err:.1e}'} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
