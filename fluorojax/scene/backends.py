"""Where scenes are rendered: this process's JAX devices ("local") or a Ray cluster ("ray").

"local" renders on this process's JAX devices (with several, each renders whole scenes with the
programs one device runs, so several scenes at once; see ``render_scenes``); "ray" runs one Ray
task per chunk of scenes of a case (``chunks_per_task`` scenes each) on a Ray cluster
(``ray_address``; None starts or joins a local one), each task writing its own images; the
driver then writes the case files and splits. Every worker must see ``out_dir`` and the CT
paths at the same paths (a shared file system). On Slurm, start Ray on the allocation
(``ray start --head`` on the first node, ``ray start --address=HEAD:6379`` on the others, e.g.
from an ``srun`` step) and pass ``ray_address="auto"``; on a cloud cluster launched with
``ray up``, run the generator on the head node the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import jax

from fluorojax._files import StrPath
from fluorojax._optional import import_optional
from fluorojax.fluoroseg import FluoroSegWriter
from fluorojax.scene.cases import CaseSource, PreparedCase, prepare_case
from fluorojax.scene.images import render_scene_images, scene_chunks
from fluorojax.scene.progress import Progress, Summary
from fluorojax.scene.spec import SceneSpec


def render_scenes(
    prepared: PreparedCase, spec: SceneSpec, seed: int, scenes: Sequence[range]
) -> Iterator[tuple[list, dict]]:
    """``render_scene_images`` of every scene, in order, with its seconds per stage: yields
    (records, stages) per scene.

    With n local devices, scene k renders whole on device k mod n (``jax.default_device``, one
    thread per device, one scene per device at a time). Each device runs the programs that one
    device runs for the scene, so the records are the same bit for bit whatever n; splitting a
    scene's batch over the devices instead would change its shapes, and XLA's rounding with them.
    """
    devices = jax.local_devices()
    copies = [dataclasses.replace(prepared, densities=jax.device_put(prepared.densities, d)) for d in devices]

    def render(k: int, scene: range):
        with jax.default_device(devices[k % len(devices)]):
            stages: dict = {}
            return render_scene_images(copies[k % len(devices)], spec, seed, scene, stages), stages

    with ThreadPoolExecutor(len(devices)) as pool:
        pending: collections.deque = collections.deque()
        for k, scene in enumerate(scenes):
            if len(pending) == len(devices):
                yield pending.popleft().result()
            pending.append(pool.submit(render, k, scene))
        while pending:
            yield pending.popleft().result()


def run_scenes(
    prepared: PreparedCase,
    writer: FluoroSegWriter,
    spec: SceneSpec,
    seed: int,
    scenes: Iterable[range],
    progress: Progress | None,
) -> Summary:
    """Render and write the images of ``scenes`` that ``writer`` does not hold complete yet."""
    summary = Summary()
    case = prepared.source.name
    todo = {}
    for scene in scenes:
        missing = [i for i in scene if not writer.is_complete(case, i)]
        summary.skipped += len(scene) - len(missing)
        if missing:
            todo[scene] = missing
    for scene, (records, stages) in zip(todo, render_scenes(prepared, spec, seed, list(todo))):
        summary.add(Summary(stages=stages))
        for record in records:
            if record.index not in todo[scene]:
                continue
            start = time.perf_counter()
            record.write(writer, case, seed)
            summary.stages["write"] = summary.stages.get("write", 0.0) + time.perf_counter() - start
            summary.written += 1
            if progress is not None:
                progress.update()
    return summary


def finish(writer: FluoroSegWriter, sources: Sequence[CaseSource], spec: SceneSpec) -> None:
    """Write every case file and the splits (the last ``val_fraction`` of the cases by name in val)."""
    names = sorted(s.name for s in sources)
    for source in sources:
        writer.write_case(source.name, volumes=[source.volume_entry()])
    n_val = int(round(spec.render.val_fraction * len(names))) if len(names) > 1 else 0
    writer.write_splits(train=names[: len(names) - n_val], val=names[len(names) - n_val :])


def _ray_task(out_dir: str, source: CaseSource, spec_dict: dict, seed: int, scenes: list) -> Summary:
    spec = SceneSpec.from_dict(spec_dict)
    writer = FluoroSegWriter(out_dir, remove_temp_files=False)
    return run_scenes(prepare_case(source, spec), writer, spec, seed, [range(a, b) for a, b in scenes], None)


def run_local(
    writer: FluoroSegWriter, sources: Sequence[CaseSource], spec: SceneSpec, seed: int, progress: Progress
) -> Summary:
    """Every case rendered on this process's devices, one after the other."""
    summary = Summary()
    for source in sources:
        begin = time.perf_counter()
        prepared = prepare_case(source, spec)
        summary.stages["prepare"] = summary.stages.get("prepare", 0.0) + time.perf_counter() - begin
        summary.add(run_scenes(prepared, writer, spec, seed, scene_chunks(spec), progress))
    return summary


def run_ray(
    out_dir: StrPath,
    sources: Sequence[CaseSource],
    spec: SceneSpec,
    seed: int,
    chunks_per_task: int,
    ray_address: str | None,
    progress: Progress,
) -> Summary:
    """Every case rendered by Ray tasks of ``chunks_per_task`` scenes (see the module docstring)."""
    ray = import_optional("ray", "ray", "backend='ray'")
    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    task = ray.remote(_ray_task)
    futures = []
    for source in sources:
        scenes = [(s.start, s.stop) for s in scene_chunks(spec)]
        for k in range(0, len(scenes), chunks_per_task):
            part = scenes[k : k + chunks_per_task]
            futures.append((sum(b - a for a, b in part), task.remote(str(out_dir), source, spec.to_dict(), seed, part)))
    summary = Summary()
    pending = {f: n for n, f in futures}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for f in done:
            summary.add(ray.get(f))
            progress.update(pending.pop(f))
    return summary
