"""The dataset generator: CTs with label maps -> a FluoroSeg dataset of DRRs, masks and text.

For every case (a CT, its label map and the structure name of every label id), images
``0 .. images_per_ct - 1`` are drawn and rendered in scenes of ``render.views_per_scene``
consecutive images that share one tool placement and one batched render call. Randomness is
a tree of keys (``fluorojax.scene.keys``): the same seed gives the same files bit for bit, a
killed run resumes (``resume=True``: complete images are skipped; a partly written scene is
rendered whole and only its missing images written), and any image can be regenerated
(``regenerate_image``). The output folder keeps a record of the run (seed, spec, CT set,
fluorojax version; ``fluorojax.scene.run_record``): a run refuses a folder that is neither
empty nor a fluorojax dataset, and a folder written by a different run.

The parts, one module each: ``cases`` (CT folders, ``CaseSource``, ``prepare_case``), ``keys``
(the key tree), ``images`` (rendering one scene's images), ``progress`` (progress bar and
``Summary``), ``backends`` (local devices and Ray), ``run_record``. Their public names are
re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fluorojax import _validate
from fluorojax._files import StrPath
from fluorojax.fluoroseg import FluoroSegWriter
from fluorojax.scene.backends import (
    finish,
    render_scenes,
    run_local,
    run_ray,
    run_scenes,
)
from fluorojax.scene.cases import (
    CaseSource,
    PreparedCase,
    example_case,
    find_cases,
    prepare_case,
    read_structures,
)
from fluorojax.scene.images import (
    TOOL_CATEGORY_ID,
    ImagePlan,
    ImageRecord,
    regenerate_image,
    render_scene_images,
    scene_chunks,
)
from fluorojax.scene.keys import case_id, image_key
from fluorojax.scene.progress import Progress, Summary
from fluorojax.scene.run_record import RUN_FILE, claim_output, run_record
from fluorojax.scene.spec import SceneSpec

__all__ = [
    "RUN_FILE",
    "TOOL_CATEGORY_ID",
    "CaseSource",
    "ImagePlan",
    "ImageRecord",
    "PreparedCase",
    "Progress",
    "Summary",
    "case_id",
    "example_case",
    "find_cases",
    "generate",
    "image_key",
    "prepare_case",
    "read_structures",
    "regenerate_image",
    "render_scene_images",
    "render_scenes",
    "run_scenes",
    "scene_chunks",
]


def check_spec_memory(spec: SceneSpec) -> None:
    """ValueError when one scene of the largest image size cannot fit in memory."""
    for height, width in spec.device.image_sizes:
        _validate.fits_memory(
            f"a scene of {spec.render.views_per_scene} images of {height} x {width} pixels",
            spec.render.views_per_scene,
            height,
            width,
        )


def generate(
    out_dir: StrPath,
    cases: Sequence[CaseSource] | None = None,
    spec: SceneSpec | None = None,
    *,
    seed: int | None = None,
    resume: bool = False,
    progress: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    chunks_per_task: int = 4,
) -> Summary:
    """Generate a FluoroSeg dataset under ``out_dir``.

    Args:
      out_dir: dataset root (created; must be missing, empty or a dataset of the same run).
      cases: the ``CaseSource`` s (default: the bundled example); names must be unique.
      spec: the ``SceneSpec`` (default ``SceneSpec()``).
      seed: overrides ``spec.seed``.
      resume: continue a partial dataset, skipping complete images; without it a case that
        already has images raises ValueError. A folder written with another seed, spec, CT set
        or fluorojax version is refused either way, naming the difference.
      progress: show a progress bar (tqdm, on stderr).
      backend: "local" or "ray" (see ``fluorojax.scene.backends``).
      ray_address: the Ray cluster to join (None: start or join a local one).
      chunks_per_task: scenes per Ray task.
    Returns:
      ``Summary``.
    """
    spec = SceneSpec() if spec is None else spec
    if not isinstance(spec, SceneSpec):
        raise _validate.ArgumentTypeError(f"spec must be a SceneSpec, got {type(spec).__name__}")
    seed = spec.seed if seed is None else _validate.integer("seed", seed, minimum=0)
    backend = _validate.choice("backend", backend, ("local", "ray"))
    chunks_per_task = _validate.positive_int("chunks_per_task", chunks_per_task)
    resume, progress = _validate.boolean("resume", resume), _validate.boolean("progress", progress)
    sources = list(cases) if cases is not None else [example_case()]
    if not all(isinstance(s, CaseSource) for s in sources):
        raise _validate.ArgumentTypeError(
            f"cases must be CaseSource objects, got {[type(s).__name__ for s in sources]}"
        )
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or not sources:
        raise ValueError(f"case names must be unique and at least one case given, got {names}")
    check_spec_memory(spec)
    claim_output(out_dir, run_record(sources, spec, seed))
    writer = FluoroSegWriter(out_dir)
    done = {s.name: len(writer.completed(s.name)) for s in sources}
    if not resume and any(done.values()):
        started = sorted(n for n, k in done.items() if k)
        raise ValueError(f"{out_dir} already holds images of cases {started}: pass resume=True (--resume) to continue")
    start = time.perf_counter()
    total = spec.images_per_ct * len(sources)
    bar = Progress(total, sum(min(k, spec.images_per_ct) for k in done.values()), enabled=progress)
    try:
        if backend == "ray":
            summary = run_ray(out_dir, sources, spec, seed, chunks_per_task, ray_address, bar)
        else:
            summary = run_local(writer, sources, spec, seed, bar)
    finally:
        bar.close()
    finish(writer, sources, spec)
    summary.cases = len(sources)
    summary.seconds = time.perf_counter() - start
    return summary
