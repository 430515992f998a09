"""Core renderer benchmark: fluorojax against DiffDRR, nanodrr and a compiled Siddon, one run.

    python benchmarks/bench_render.py [--sizes 200 512] [--peers] [--md benchmarks/results/render.md]

Geometry (issue 2): the full chest CT of ../shared/data (512 x 512 x 133), AP view, source
510 mm anterior of the grid centre, source-to-detector 1020 mm, 200 x 200 pixels of 2 mm and
512 x 512 pixels of 0.78 mm. Every configuration runs in a fresh subprocess: one warm-up
(compilation), then ``--repeats`` timed runs, median reported. "forward" renders the image;
"forward+backward" also takes the gradient of the image sum with respect to the pose (a
6-vector se(3) increment). Peak memory is the child's resident-set high-water mark during the
renders (VmHWM after a reset once the CT is loaded) and over the whole process (ru_maxrss).
fluorojax renders the raw HU values, as the peers do, so all images are comparable; each
image is checked against the numba Siddon reference (max relative error over pixels).
"""

from __future__ import annotations

import argparse
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


def child(method, size, mode, repeats, save):
    """One configuration in this process; prints a JSON line."""
    import resource

    import jax
    import jax.numpy as jnp
    import numpy as np

    import fluorojax as fj
    from fluorojax.transforms import se3_exp

    volume = fj.load_volume(CT_PATH)
    pixels, pixel_size = SIZES[size]
    camera = fj.Camera(pixels, pixels, pixel_size, SDD_MM)
    pose = fj.carm_pose(0.0, 0.0, SOURCE_TO_ISOCENTER_MM, volume.center)
    if mode == "forward":
        fn = jax.jit(lambda v, p: fj.render(v, camera, p, method))
        run = lambda: fn(volume, pose)  # noqa: E731
    else:
        grad = jax.jit(jax.value_and_grad(lambda w, v: jnp.sum(fj.render(v, camera, pose @ se3_exp(w), method))))
        run = lambda: grad(jnp.zeros(6), volume)  # noqa: E731
    reset = _reset_hwm()
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(run())
        times.append(time.perf_counter() - t0)
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
            }
        )
    )


def _run_child(args_list, timeout=1800):
    out = subprocess.run(args_list, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args_list)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _max_rel_error(image_path, reference):
    import numpy as np

    image = np.load(image_path).astype(np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(image - reference).max() / scale)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 512], choices=sorted(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", action="store_true", help="also run DiffDRR and nanodrr from .venv-peers")
    parser.add_argument("--peer-python", default=os.path.join(HERE, "..", ".venv-peers", "bin", "python"))
    parser.add_argument("--peer-list", default="diffdrr-siddon,diffdrr-trilinear,nanodrr")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "render.json"))
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "SIZE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2], args.repeats, args.save)
        return

    import numpy as np

    import siddon_numba

    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    rows = []
    images = os.path.join(os.path.dirname(args.json), "images")
    os.makedirs(images, exist_ok=True)
    for size in args.sizes:
        for order in ("rows", "columns"):
            reference = siddon_numba.benchmark(size, repeats=args.repeats, ray_order=order)
            rows.append({k: v for k, v in reference.items() if k != "image"})
            rows[-1]["impl"] = f"siddon-numba ({order} order)"
            print(json.dumps(rows[-1]), flush=True)
        for method in args.methods:
            for mode in MODES:
                save = os.path.join(images, f"fluorojax-{method}-{size}.npy")
                cmd = [sys.executable, __file__, "--child", method, str(size), mode, "--repeats", str(args.repeats), "--save", save]
                row = _run_child(cmd)
                if mode == "forward":
                    row["max_rel_error_vs_reference"] = _max_rel_error(save, reference["image"])
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.peers:
            out = os.path.join(images, f"peers-{size}.json")
            cmd = [args.peer_python, os.path.join(HERE, "peers_drr.py"), "--size", str(size), "--which", args.peer_list,
                   "--repeats", str(args.repeats), "--json", out, "--save-images", images]
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
        lines += [f"### {size} x {size}", "",
                  "| implementation | mode | median s | x fluorojax siddon | peak MB (render) | peak MB (process) | max rel. error vs exact |",
                  "|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["size"] == size):
            ratio = r["median_s"] / ours[r["mode"]] if r["mode"] in ours else float("nan")
            fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
            err = r.get("max_rel_error_vs_reference")
            lines.append(f"| {r['impl']} | {r['mode']} | {r['median_s']:.3f} | {ratio:.2f} | {fmt(r.get('peak_render_mb'))} | "
                         f"{fmt(r.get('peak_process_mb'))} | {'-' if err is None else f'{err:.1e}'} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
