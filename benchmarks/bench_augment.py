"""Benchmark: FluoroSeg's training augmentation, fluorojax.augment vs FluoroSeg's own loader code.

The same 32 DRRs of the bundled CT at 448 x 448 (FluoroSAM's input size), each with 16 boolean
structure masks (the 16 largest labels, rendered in the same pass), go through

* ``fluorojax.augment.apply_batch(default_pipeline((448, 448)), keys, images, masks)``, one
  jitted call per batch with the default batching (``lax.map`` on the CPU);
* FluoroSeg's own pipeline, ``build_augmentation((448, 448), train=True)`` from its public
  repository (``src/fluoroseg/alb/build_aug.py``, with its ``neglog``, ``window`` and
  ``dropout`` modules, albumentations 2.x), run as its dataset's ``__getitem__`` runs it: the
  image made 3-channel float32 (``cv2.COLOR_GRAY2RGB``), the masks (H, W, N) float32, and the
  pipeline built for every sample (the loader calls ``build_augmentation`` per item, which also
  draws its SomeOf count per sample, as ``default_pipeline`` does). A second row times the same
  pipeline built once per batch and reused (pipeline construction excluded).

FluoroSeg's code is not part of this repository: it runs in a separate virtual environment
(``bash scripts/setup_albu_venv.sh`` builds ``.venv-albu``) from a checkout of its repository
given with ``--fluoroseg`` (the directory holding ``src/fluoroseg/alb``), in a worker process
that this script drives over a pipe. The timed batches alternate between the implementations
(ours, the loader's, the loader's reused, ours, ...) so that load from other processes on a
shared machine hits all of them alike. Reports the median seconds per batch over the timed
batches and, for fluorojax, the first call (tracing and compilation included) separately;
writes a markdown table to benchmarks/results/augment.md.

    bash scripts/setup_albu_venv.sh
    python benchmarks/bench_augment.py --fluoroseg /path/to/fluoroseg [--batches 5] [--machine "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZE = 448
BATCH = 32
N_MASKS = 16
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the loader's side (worker)


def worker(fluoroseg: str, drrs: str) -> None:
    """Runs in the albumentations venv: reads batch indices on stdin, augments that batch with
    FluoroSeg's ``build_augmentation`` the loader's way and the reused way, and answers with the
    two (wall, CPU) times (s) as JSON."""
    import cv2
    import numpy as np

    sys.path.insert(0, str(Path(fluoroseg) / "src"))
    import albumentations
    from fluoroseg.alb.build_aug import build_augmentation

    data = np.load(drrs)
    images, masks = data["images"], data["masks"]
    batch_size = images.shape[0] // int(data["batches"])
    print(json.dumps({"albumentations": albumentations.__version__}), flush=True)

    def sample(aug, image, mask):
        out = aug(image=cv2.cvtColor(image, cv2.COLOR_GRAY2RGB).astype(np.float32), mask=mask)
        return out["image"], out["mask"]

    for line in sys.stdin:
        b = int(line)
        sl = slice(b * batch_size, (b + 1) * batch_size)
        seg = [np.moveaxis(m, 0, -1).astype(np.float32) for m in masks[sl]]
        t0, c0 = time.perf_counter(), time.process_time()
        for image, mask in zip(images[sl], seg):
            sample(build_augmentation((SIZE, SIZE), train=True), image, mask)
        loader = (time.perf_counter() - t0, time.process_time() - c0)
        aug = build_augmentation((SIZE, SIZE), train=True)
        t0, c0 = time.perf_counter(), time.process_time()
        for image, mask in zip(images[sl], seg):
            sample(aug, image, mask)
        reused = (time.perf_counter() - t0, time.process_time() - c0)
        print(json.dumps({"loader": loader, "reused": reused}), flush=True)


# ---------------------------------------------------------------- the DRRs


def make_drrs(path: Path, batches: int) -> None:
    """Render ``batches`` x 32 raw DRRs (exp(-line integral)) of the bundled CT at random C-arm
    angles (LAO/RAO +-40 deg, CRA/CAU +-20 deg) with masks of its 16 largest structures; save
    them to ``path`` (npz: images (B, H, W) float32, masks (B, 16, H, W) bool)."""
    import jax
    import numpy as np

    import fluorojax as fj
    import fluorojax.augment as fa

    volume = fj.hu_to_mu(fj.load_example())
    labels = np.asarray(volume.labels)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    label_ids = tuple(int(i) for i in ids[np.argsort(-counts)][:N_MASKS])
    centre = np.asarray(volume.affine) @ np.append((np.asarray(labels.shape) - 1) / 2.0, 1.0)
    camera = fj.Camera(SIZE, SIZE, 1.0, 1020.0)
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(batches):
        for _ in range(BATCH // 8):
            lao = rng.uniform(-40.0, 40.0, 8)
            cra = rng.uniform(-20.0, 20.0, 8)
            poses = fj.carm_pose(lao, cra, 765.0, centre[:3])
            img, m = fj.render_augmented(jax.random.key(0), volume, camera, poses, fa.identity, label_ids=label_ids)
            images.append(np.asarray(img))
            masks.append(np.asarray(m))
    np.savez(path, images=np.concatenate(images), masks=np.concatenate(masks), batches=batches)


# ---------------------------------------------------------------- timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fluoroseg", required=True, help="checkout of FluoroSeg's repository")
    parser.add_argument("--albu-python", default=str(ROOT / ".venv-albu" / "bin" / "python"))
    parser.add_argument("--batches", type=int, default=5, help="timed batches (plus one warm-up)")
    parser.add_argument(
        "--drrs", default="/tmp/fluorojax_bench_augment_drrs.npz", help="cache of the rendered DRRs (made when missing)"
    )
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()} CPU")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "augment.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.fluoroseg, args.drrs)
        return
    if not (Path(args.fluoroseg) / "src" / "fluoroseg" / "alb" / "build_aug.py").is_file():
        raise FileNotFoundError(f"--fluoroseg {args.fluoroseg}: no src/fluoroseg/alb/build_aug.py there")
    if not Path(args.albu_python).is_file():
        raise FileNotFoundError(f"--albu-python {args.albu_python}: run scripts/setup_albu_venv.sh")

    n_batches = args.batches + 1
    drrs = Path(args.drrs)
    if drrs.is_file():
        import numpy as np

        with np.load(drrs) as d:
            if int(d["batches"]) < n_batches:
                drrs.unlink()
    if not drrs.is_file():
        make_drrs(drrs, n_batches)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    workers = {
        threads: subprocess.Popen(
            [args.albu_python, __file__, "--worker", "--fluoroseg", args.fluoroseg, "--drrs", str(drrs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env if threads == "default" else {**env, "OMP_NUM_THREADS": "1"},
        )
        for threads in ("default", "1")
    }
    albu_version = [json.loads(w.stdout.readline())["albumentations"] for w in workers.values()][0]

    import jax
    import numpy as np

    import fluorojax.augment as fa

    with np.load(drrs) as d:
        per = d["images"].shape[0] // int(d["batches"])
        batches = [
            (
                jax.numpy.asarray(d["images"][b * per : (b + 1) * per]),
                jax.numpy.asarray(d["masks"][b * per : (b + 1) * per]),
            )
            for b in range(n_batches)
        ]
    pipe = fa.default_pipeline((SIZE, SIZE))
    times = {"ours": []}
    first = None
    for b, (images, masks) in enumerate(batches):
        keys = jax.random.split(jax.random.key(b), BATCH)
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fa.apply_batch(pipe, keys, images, masks))
        dt = (time.perf_counter() - t0, time.process_time() - c0)
        report = [f"batch {b}: fluorojax {dt[0]:.2f} s ({dt[1]:.2f} s CPU)"]
        for threads, w in workers.items():
            w.stdin.write(f"{b}\n")
            w.stdin.flush()
            for mode, t in json.loads(w.stdout.readline()).items():
                report.append(f"{mode} (OpenMP {threads}) {t[0]:.2f} s ({t[1]:.2f} s CPU)")
                if b:
                    times.setdefault((mode, threads), []).append(t)
        print(", ".join(report), flush=True)
        if b == 0:
            first = dt
        else:
            times["ours"].append(dt)
    for w in workers.values():
        w.stdin.close()
        w.wait()

    def median(pairs):
        return tuple(statistics.median(p[i] for p in pairs) for i in range(2))

    ours = median(times.pop("ours"))
    fluoroseg = f"FluoroSeg `build_augmentation(train=True)`, albumentations {albu_version}"
    built = {"loader": "built per sample (the loader's way)", "reused": "built once per batch"}
    omp = {"default": "OpenMP threads default (2)", "1": "OMP_NUM_THREADS=1 (scikit-learn's k-means on one thread)"}
    rows = [("fluorojax.augment `apply_batch(default_pipeline)` (lax.map on the CPU, jitted)", ours)]
    rows += [(f"{fluoroseg}, {built[m]}, {omp[t]}", median(v)) for (m, t), v in times.items()]
    ref = min(med[0] for _, med in rows[1:])
    ref_cpu = min(med[1] for _, med in rows[1:])
    load = os.getloadavg()
    lines = [
        "# Augmentation: FluoroSeg training pipeline",
        "",
        f"{BATCH} DRRs of the bundled CT per batch at {SIZE} x {SIZE} with {N_MASKS} bool structure masks each, "
        f"median seconds per batch over {args.batches} timed batches (the same images for every row), the "
        "implementations interleaved batch by batch; FluoroSeg's code from its public repository, run in "
        "its own venv (benchmarks/bench_augment.py).",
        f"Machine: {args.machine}, {os.cpu_count()} cores, all usable by both sides (neither process is pinned); "
        f"load average at the end {load[0]:.1f} (above 2 means other processes shared the CPU). "
        f"jax {jax.__version__} on {jax.devices()[0].platform}.",
        "",
        "| implementation | s / batch | images / s | fluorojax's speed-up over this row | CPU s / batch | fluorojax's speed-up in CPU time |",
        "|---|---|---|---|---|---|",
    ]
    for name, med in rows:
        lines.append(
            f"| {name} | {med[0]:.3f} | {BATCH / med[0]:.1f} | {med[0] / ours[0]:.2f}x | "
            f"{med[1]:.3f} | {med[1] / ours[1]:.2f}x |"
        )
    lines += [
        "",
        f"fluorojax is {ref / ours[0]:.2f}x faster than the fastest FluoroSeg row in wall time and "
        f"{ref_cpu / ours[1]:.2f}x in CPU time (all threads of the process; less sensitive than wall "
        f"time to the other processes on a shared CPU). Its first call (tracing and compilation "
        f"included, first batch): {first[0]:.1f} s wall, {first[1]:.1f} s CPU.",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
