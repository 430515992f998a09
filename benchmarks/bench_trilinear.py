"""Trilinear ray marching: forward and forward+backward against nanodrr, interleaved, one run.

    python benchmarks/bench_trilinear.py [--sizes 200 512] [--rounds 3] [--before DIR] [--md FILE]

Geometry and data as in ``bench_render.py`` (issue 2): the full chest CT (512 x 512 x 133, raw
HU), AP view, source 510 mm from the grid centre, detector at 1020 mm, 200 x 200 pixels of 2 mm
and 512 x 512 of 0.78 mm, 500 samples per ray. "forward" renders the image under ``jax.jit``;
"forward+backward" also takes the gradient of the image sum with respect to a 6-vector se(3)
increment of the pose (``jax.value_and_grad`` under ``jax.jit``). nanodrr 0.1.7 (torch, CPU,
2 threads) runs the same view through ``peers_drr.py``'s child mode in ``.venv-peers``.

Every measurement is a fresh subprocess (load, one warm-up, ``--repeats`` timed runs, median),
and the implementations take turns: round 1 runs each (implementation, mode) once, round 2
again, and so on, so that load from other processes hits all of them alike; the table gives
the median over rounds of wall time and of process CPU time (on a shared machine the CPU time
is the steadier figure). ``--before DIR`` also times the fluorojax package found in DIR (e.g.
an older commit unpacked with ``git archive``), for before/after figures in the same run.
Peak memory: VmHWM during the renders (fluorojax: reset after loading the CT and compiling;
nanodrr: reset after its setup) and the child's whole ru_maxrss (compilation included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_render and siddon_numba sit beside this script

from bench_render import _reset_hwm, _vmhwm_mb
from siddon_numba import CT_PATH, SDD_MM, SIZES, SOURCE_TO_ISOCENTER_MM, machine_info

HERE = os.path.dirname(os.path.abspath(__file__))

MODES = ("forward", "forward+backward")
N_SAMPLES = 500


def child(size, mode, repeats, ct):
    """Time fluorojax's trilinear render in this process; prints one JSON line."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import fluorojax as fj
    from fluorojax.transforms import se3_exp

    volume = fj.load_volume(ct)
    pixels, pixel_size = SIZES[size]
    camera = fj.Camera(pixels, pixels, pixel_size, SDD_MM)
    pose = fj.carm_pose(0.0, 0.0, SOURCE_TO_ISOCENTER_MM, volume.center)

    def image(twist, volume):
        return fj.render(volume, camera, pose @ se3_exp(twist), "trilinear", n_samples=N_SAMPLES)

    if mode == "forward":
        fn = jax.jit(image)
    else:
        fn = jax.jit(jax.value_and_grad(lambda twist, volume: jnp.sum(image(twist, volume))))
    start = time.perf_counter()
    args = (jnp.zeros(6), volume)
    fn = fn.lower(*args).compile()  # compile before the memory reset: the peak is the renders'
    reset = _reset_hwm()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    record = {
        "impl": "fluorojax-trilinear",
        "size": size,
        "mode": mode,
        "first_s": first,
        "median_s": statistics.median(wall),
        "times_s": wall,
        "median_cpu_s": statistics.median(cpu),
        "peak_render_mb": _vmhwm_mb() if reset else None,
        "fluorojax": os.path.dirname(os.path.dirname(fj.__file__)),
        "jax": jax.__version__,
    }
    if mode != "forward":
        record["pose_grad"] = np.asarray(out[1]).tolist()
    print(json.dumps(record))


def spawn(command, env=None):
    """Run one child; its JSON record plus its peak RSS (wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    record = json.loads(stdout.strip().splitlines()[-1])
    record["peak_process_mb"] = usage.ru_maxrss / 1024
    return record


def summarize(rows):
    """Median over rounds per (impl, size, mode)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["impl"], row["size"], row["mode"]), []).append(row)
    out = []
    for (impl, size, mode), runs in groups.items():
        out.append(
            {
                "impl": impl,
                "size": size,
                "mode": mode,
                "rounds": len(runs),
                "median_s": statistics.median(r["median_s"] for r in runs),
                "median_cpu_s": statistics.median(r["median_cpu_s"] for r in runs),
                "peak_render_mb": max((r.get("peak_render_mb") or 0.0) for r in runs) or None,
                "peak_process_mb": max(r["peak_process_mb"] for r in runs),
            }
        )
    return out


def _megabytes(x):
    return "-" if x is None else f"{x:.0f}"


def markdown(summary, machine, note):
    lines = [f"Machine: {machine}", "", note, ""]
    for size in sorted({r["size"] for r in summary}):
        lines += [
            f"### {size} x {size}, {N_SAMPLES} samples per ray",
            "",
            (
                "| implementation | mode | median s (wall) | median s (CPU) | fwd+bwd / fwd (wall, CPU) | peak MB (renders) | "
                "peak MB (process) |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        rows = [r for r in summary if r["size"] == size]
        forward = {r["impl"]: r for r in rows if r["mode"] == "forward"}
        for r in rows:
            f = forward.get(r["impl"]) if r["mode"] != "forward" else None
            ratio = (
                "-"
                if f is None
                else f"{r['median_s'] / f['median_s']:.2f}, {r['median_cpu_s'] / f['median_cpu_s']:.2f}"
            )
            lines.append(
                f"| {r['impl']} | {r['mode']} | {r['median_s']:.3f} | {r['median_cpu_s']:.3f} | {ratio} | "
                f"{_megabytes(r['peak_render_mb'])} | {_megabytes(r['peak_process_mb'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 512], choices=sorted(SIZES))
    parser.add_argument("--rounds", type=int, default=3, help="times each (implementation, mode) runs, in turns")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per child after one warm-up")
    parser.add_argument("--ct", default=str(CT_PATH))
    parser.add_argument("--before", help="directory holding another fluorojax package to time beside this one")
    parser.add_argument("--no-peers", action="store_true", help="skip nanodrr")
    parser.add_argument("--peer-python", default=os.path.join(HERE, "..", ".venv-peers", "bin", "python"))
    parser.add_argument("--json", default=os.path.join(HERE, "results", "trilinear.json"))
    parser.add_argument("--note", default="", help="a line for the table, e.g. the load on the machine")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.repeats, args.ct)
        return
    if not os.path.exists(args.ct):
        parser.error(f"--ct: no CT at {args.ct}")
    here = os.path.dirname(HERE)
    impls = {"fluorojax-trilinear": here}
    if args.before:
        impls["fluorojax-trilinear (before)"] = os.path.abspath(args.before)
    rows = []
    for size in args.sizes:
        for round_ in range(args.rounds):
            for name, root in impls.items():
                for mode in MODES:
                    env = dict(os.environ, PYTHONPATH=root)
                    row = spawn(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            str(size),
                            mode,
                            "--repeats",
                            str(args.repeats),
                            "--ct",
                            args.ct,
                        ],
                        env,
                    )
                    row["impl"], row["round"] = name, round_
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if not args.no_peers:
                for mode in MODES:
                    command = [
                        args.peer_python,
                        os.path.join(HERE, "peers_drr.py"),
                        "--_child",
                        f"nanodrr:{mode}",
                        "--size",
                        str(size),
                        "--repeats",
                        str(args.repeats),
                        "--n-samples",
                        str(N_SAMPLES),
                        "--ct",
                        args.ct,
                    ]
                    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
                    row = spawn(command, env)
                    row["round"] = round_
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = summarize(rows)
    machine = machine_info()
    load = os.getloadavg()
    note = (
        f"Load average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} on {os.cpu_count()} cores. " + args.note
    ).strip()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(
            {"machine": machine, "note": note, "n_samples": N_SAMPLES, "summary": summary, "runs": rows}, f, indent=1
        )
    with open(args.json.replace(".json", ".md"), "w") as f:
        f.write(markdown(summary, machine, note))
    print(markdown(summary, machine, note))


if __name__ == "__main__":
    main()
