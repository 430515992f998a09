"""The dataset generator: CTs with label maps -> a FluoroSeg dataset of DRRs, masks and text.

For every case (a CT, its label map and the structure name of every label id), images
``0 .. images_per_ct - 1`` are drawn and rendered in scenes of ``render.views_per_scene``
consecutive images that share one tool placement and one batched render call. Randomness is
a tree of keys: image ``i`` of case ``c`` uses ``image_key(seed, c, i) = fold_in(fold_in(
key(seed), case_id(c)), i)``, split by ``fold_in`` into its device (0), view (1) and noise (2)
keys; a scene's tools come from ``fold_in(image_key(seed, c, first image), 3)``. Nothing
depends on which images were already written, on the order cases are visited, on the number
of devices or on the backend, so the same seed gives the same files bit for bit, a killed run
resumes (``resume=True``: complete images are skipped; a partly written scene is rendered
whole and only its missing images written), and any image can be regenerated
(``regenerate_image``).

CT folders (``find_cases``): one sub-folder per case, named after the case, holding
``ct.nii.gz`` (Hounsfield units), ``labels.nii.gz`` (integer label map on the CT's grid) and
``structures.csv`` (``id,structure``: the TotalSegmentator name of each label id, as in
``fluorojax/data/example_structures.csv``); ``.nii`` works as well as ``.nii.gz``.

Backends: "local" renders on this process's JAX devices (with several, each renders whole
scenes with the programs one device runs, so several scenes at once; see ``render_scenes``);
"ray" runs one Ray task per chunk of scenes of a case (``chunks_per_task`` scenes each) on a
Ray cluster (``ray_address``; None starts or joins a local one), each task writing its own
images; the driver then writes the case files and splits. Every worker must see ``out_dir``
and the CT paths at the same paths (a shared file system). On Slurm, start
Ray on the allocation (``ray start --head`` on the first node, ``ray start --address=HEAD:6379``
on the others, e.g. from an ``srun`` step) and pass ``ray_address="auto"``; on a cloud cluster
launched with ``ray up``, run the generator on the head node the same way.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import sys
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.fluoroseg import Annotation, FluoroSegWriter, camera_dict, cutoff_category_id, describe_tool, get_category
from fluorojax.physics import DEFAULT_MATERIALS, material_volume, monochromatic, spectrum
from fluorojax.scene.devices import Device, sample_device
from fluorojax.simulate.scene import SceneRender, render_scene
from fluorojax.scene.spec import SceneSpec
from fluorojax.scene.tools import ToolPlacement, build_tool, sample_tools
from fluorojax.scene.views import Anatomy, anatomy_from_labels, sample_view
from fluorojax.volume import Volume, example_paths, load_volume

TOOL_CATEGORY_ID = 1000
_DEVICE, _VIEW, _NOISE, _SCENE = 0, 1, 2, 3


# ------------------------------------------------------------------------------------------
# cases


@dataclasses.dataclass(frozen=True)
class CaseSource:
    """Where a case's data lives: its name, CT, label map and structure table (paths); all
    three None means the bundled example chest CT."""

    name: str
    ct: str | None = None
    labels: str | None = None
    structures: str | None = None

    def __post_init__(self):
        given = [p is not None for p in (self.ct, self.labels, self.structures)]
        if any(given) and not all(given):
            raise ValueError(f"case {self.name!r} needs ct, labels and structures together (or none for the example), got {self}")

    def load(self) -> tuple[Volume, dict[int, str]]:
        """The CT ``Volume`` (HU, with labels) and {label id: structure name}."""
        if self.ct is None:
            ct, labels = example_paths()
            return load_volume(ct, labels=labels), read_structures(Path(ct).with_name("example_structures.csv"))
        return load_volume(self.ct, labels=self.labels), read_structures(self.structures)

    def volume_entry(self) -> dict:
        """The case file's ``volumes`` entry (file names only, so datasets do not depend on paths)."""
        ct = self.ct if self.ct is not None else example_paths()[0]
        labels = self.labels if self.labels is not None else example_paths()[1]
        return {"id": 0, "case": self.name, "file_name": os.path.basename(ct), "labels": os.path.basename(labels)}


def example_case(name: str = "example") -> CaseSource:
    """The bundled example chest CT as a case."""
    return CaseSource(name)


def read_structures(path) -> dict[int, str]:
    """{label id: structure name} from a CSV with columns ``id`` and ``structure``."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no structure table at {str(path)!r} (a CSV with columns id,structure)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "structure"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with columns id,structure, got {list(rows[0]) if rows else 'no rows'}")
    try:
        return {int(r["id"]): r["structure"].strip() for r in rows}
    except ValueError as err:
        raise ValueError(f"{path}: label ids must be integers ({err})") from None


def find_cases(directory) -> list[CaseSource]:
    """Every case folder under ``directory`` (see the module docstring), sorted by name."""
    directory = Path(os.fspath(directory))
    if not directory.is_dir():
        raise FileNotFoundError(f"CT directory {str(directory)!r} does not exist")
    cases = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        found = {}
        for stem in ("ct", "labels"):
            hits = [folder / f"{stem}{ext}" for ext in (".nii.gz", ".nii") if (folder / f"{stem}{ext}").is_file()]
            found[stem] = str(hits[0]) if hits else None
        structures = folder / "structures.csv"
        if found["ct"] is None and found["labels"] is None:
            continue
        if found["ct"] is None or found["labels"] is None or not structures.is_file():
            raise FileNotFoundError(f"case folder {folder} needs ct.nii.gz, labels.nii.gz and structures.csv")
        cases.append(CaseSource(folder.name, found["ct"], found["labels"], str(structures)))
    if not cases:
        raise FileNotFoundError(f"no case folders (with ct.nii.gz, labels.nii.gz, structures.csv) under {directory}")
    return cases


@dataclasses.dataclass(frozen=True)
class PreparedCase:
    """A case ready to render: the density volume, anatomy and label -> category mapping."""

    source: CaseSource
    densities: Volume
    anatomy: Anatomy
    label_ids: tuple
    category_ids: tuple


def prepare_case(source: CaseSource, spec: SceneSpec) -> PreparedCase:
    """Load a case and derive its material densities, anatomy and FluoroSeg category ids
    (cut-off categories for structures touching the CT's inferior / superior end)."""
    volume, names = source.load()
    anatomy = anatomy_from_labels(np.asarray(volume.labels), np.asarray(volume.affine), names)
    wanted = set(anatomy.structures) if spec.render.structures is None else set(spec.render.structures)
    label_ids, category_ids, unknown = [], [], []
    for name, structure in sorted(anatomy.structures.items(), key=lambda kv: kv[1].id):
        if name not in wanted:
            continue
        try:
            category = get_category(name)
        except ValueError:
            unknown.append(name)
            continue
        label_ids.append(structure.id)
        category_ids.append(category.id if structure.cutoff is None else cutoff_category_id(name, structure.cutoff))
    if unknown:
        warnings.warn(f"case {source.name!r}: structures {unknown} have no FluoroSeg category and are not annotated", RuntimeWarning, stacklevel=2)
    if not label_ids:
        raise ValueError(f"case {source.name!r}: no structure to annotate among {sorted(wanted)}")
    return PreparedCase(source, material_volume(volume), anatomy, tuple(label_ids), tuple(category_ids))


# ------------------------------------------------------------------------------------------
# keys and plans


def case_id(name: str) -> int:
    """A stable 31-bit id of a case name (CRC-32), used to fold the case into the key."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def image_key(seed: int, case: str, index: int):
    """The key of image ``index`` of ``case``: fold_in(fold_in(key(seed), case_id(case)), index)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), case_id(case)), index)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One rendered image with what the writer stores."""

    index: int
    image: np.ndarray
    annotations: list
    camera: dict
    view: dict
    spectrum: dict
    extra: dict


def _scene_chunks(spec: SceneSpec) -> list[range]:
    b, n = spec.render.views_per_scene, spec.images_per_ct
    return [range(start, min(start + b, n)) for start in range(0, n, b)]


def _spectrum(spec: SceneSpec, device: Device):
    if spec.render.mode == "mono":
        return monochromatic(spec.render.mono_energy_kev), {"mode": "mono", "energy_kev": spec.render.mono_energy_kev}
    return spectrum(device.kvp, spec.device.spectrum_bins), {"mode": "poly", "kvp": device.kvp, "bins": spec.device.spectrum_bins}


def _tool_hits_layers(hits: np.ndarray) -> np.ndarray:
    """(H, W, K) ascending crossings -> (K / 2, 2, H, W) nested entry / exit layers."""
    entry, exit_ = hits[..., 0::2], hits[..., 1::2]
    valid = np.logical_and.accumulate(np.isfinite(entry) & np.isfinite(exit_), axis=-1)
    layers = np.stack([np.where(valid, entry, np.inf), np.where(valid, exit_, np.inf)])  # (2, H, W, P)
    return np.moveaxis(layers, -1, 0)


def _annotations(prepared: PreparedCase, spec: SceneSpec, out: SceneRender, b: int, tools: Sequence[ToolPlacement]) -> list:
    kind = spec.render.annotation
    travel = np.asarray(out.label_travel[b])
    annotations = []
    for channel, category_id in enumerate(prepared.category_ids):
        if not travel[channel].any():
            continue
        if kind == "travel":
            annotations.append(Annotation(category_id, travel=travel[channel]))
        elif kind == "binary":
            annotations.append(Annotation(category_id, mask=travel[channel] > 0))
        else:
            layer = np.stack([np.asarray(out.label_entry[b, channel]), np.asarray(out.label_exit[b, channel])])[None]
            annotations.append(Annotation(category_id, hits=layer))
    for t, placement in enumerate(tools):
        t_travel = np.asarray(out.tool_travel[t, b])
        if not (t_travel > 0).any():
            continue
        described = {"descriptions": describe_tool(placement.kind, placement.material),
                     "extra": {"tool_kind": placement.kind, "material": placement.material}}
        if kind == "travel":
            annotations.append(Annotation(TOOL_CATEGORY_ID, travel=t_travel, **described))
        elif kind == "binary":
            annotations.append(Annotation(TOOL_CATEGORY_ID, mask=t_travel > 0, **described))
        else:
            layers = _tool_hits_layers(np.asarray(out.tool_hits[t, b]))
            if np.isfinite(layers[0, 0]).any():
                annotations.append(Annotation(TOOL_CATEGORY_ID, hits=layers, **described))
    return annotations


def render_scene_images(prepared: PreparedCase, spec: SceneSpec, seed: int, indices: Sequence[int],
                        stages: dict | None = None) -> list[ImageRecord]:
    """Render the scene that holds images ``indices`` (consecutive, one scene) of a case.

    Every image of the scene is rendered (padded to ``views_per_scene`` views per image size),
    so a resumed run repeats the computation of an uninterrupted one exactly.
    """
    case = prepared.source.name
    indices = list(indices)
    first = indices[0]
    if first % spec.render.views_per_scene or len(indices) > spec.render.views_per_scene:
        raise ValueError(f"indices {indices} are not one scene of {spec.render.views_per_scene} views")
    tools = sample_tools(jax.random.fold_in(image_key(seed, case, first), _SCENE), prepared.anatomy, spec.tools)
    built = [build_tool(t) for t in tools]
    plans = []
    for index in indices:
        key = image_key(seed, case, index)
        device = sample_device(jax.random.fold_in(key, _DEVICE), spec.device)
        view = sample_view(jax.random.fold_in(key, _VIEW), prepared.anatomy, spec.views, device.source_to_isocenter)
        plans.append((index, key, device, view))
    records = {}
    by_size: dict = {}
    for plan in plans:
        by_size.setdefault((plan[2].height, plan[2].width), []).append(plan)
    noise = spec.device.photons is not None
    for size in sorted(by_size):
        group = by_size[size]
        padded = group + [group[-1]] * (spec.render.views_per_scene - len(group))
        cameras = [p[2].camera() for p in padded]
        poses = np.stack([p[3].pose(prepared.anatomy.frame) for p in padded])
        spectra = [_spectrum(spec, p[2])[0] for p in padded]
        keys = jnp.stack([jax.random.fold_in(p[1], _NOISE) for p in padded]) if noise else None
        photons = [p[2].photons for p in padded] if noise else None
        out = render_scene(prepared.densities, prepared.label_ids, cameras, poses, spectra, built, keys, photons,
                           materials=DEFAULT_MATERIALS, tool_materials=spec.tools.materials,
                           replace_tissue=spec.tools.replace_tissue, max_hits=spec.tools.max_hits, stages=stages)
        start = time.perf_counter()
        images = np.asarray(out.image)
        for b, (index, _, device, view) in enumerate(group):
            records[index] = ImageRecord(
                index=index,
                image=images[b],
                annotations=_annotations(prepared, spec, out, b, tools),
                camera=camera_dict(cameras[b], poses[b]),
                view=view.to_dict(),
                spectrum=_spectrum(spec, device)[1],
                extra={"case": case, "device": device.to_dict(), "tools": [t.to_dict() for t in tools], "scene": first // spec.render.views_per_scene},
            )
        if stages is not None:
            stages["annotate"] = stages.get("annotate", 0.0) + time.perf_counter() - start
    return [records[i] for i in indices]


def regenerate_image(source: CaseSource, spec: SceneSpec, seed: int, index: int) -> ImageRecord:
    """Image ``index`` of ``source`` exactly as the generator renders it with ``spec`` and ``seed``."""
    if not 0 <= index < spec.images_per_ct:
        raise ValueError(f"image index must be in [0, {spec.images_per_ct}), got {index}")
    scene = _scene_chunks(spec)[index // spec.render.views_per_scene]
    records = render_scene_images(prepare_case(source, spec), spec, seed, scene)
    return records[index - scene.start]


# ------------------------------------------------------------------------------------------
# progress and summary


class Progress:
    """A progress bar: tqdm when installed, else a line on stderr every ``interval`` seconds
    with images done, images/s and the ETA."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, interval: float = 2.0):
        self.total, self.done, self.enabled, self.interval = total, initial, enabled, interval
        self.start = self.last = time.perf_counter()
        self.initial = initial
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, initial=initial, unit="img", desc="generate", dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and (time.perf_counter() - self.last >= self.interval or self.done == self.total):
            self.last = time.perf_counter()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{self.done}/{self.total} images, {rate:.2f} images/s, ETA {eta:.0f} s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclasses.dataclass
class Summary:
    """What a generator run did: images written and skipped, cases, time per stage (summed over
    devices when several render at once)."""

    written: int = 0
    skipped: int = 0
    cases: int = 0
    seconds: float = 0.0
    stages: dict = dataclasses.field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: "Summary") -> None:
        self.written += other.written
        self.skipped += other.skipped
        for k, v in other.stages.items():
            self.stages[k] = self.stages.get(k, 0.0) + v

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.stages.items(), key=lambda kv: -kv[1]))
        return (f"{self.written} images written, {self.skipped} already complete, {self.cases} cases, "
                f"{self.seconds:.1f} s ({self.images_per_second:.2f} images/s); stages: {stages or 'none'}")


# ------------------------------------------------------------------------------------------
# running


def render_scenes(prepared: PreparedCase, spec: SceneSpec, seed: int, scenes: Sequence[range]) -> Iterator[tuple[list, dict]]:
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


def _run_scenes(prepared: PreparedCase, writer: FluoroSegWriter, spec: SceneSpec, seed: int, scenes: Iterable[range],
                progress: Progress | None) -> Summary:
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
            writer.write_image(case, record.index, record.image, record.annotations, record.camera, view=record.view,
                               spectrum=record.spectrum, seed=seed, extra=record.extra)
            summary.stages["write"] = summary.stages.get("write", 0.0) + time.perf_counter() - start
            summary.written += 1
            if progress is not None:
                progress.update()
    return summary


def _finish(writer: FluoroSegWriter, sources: Sequence[CaseSource], spec: SceneSpec) -> None:
    names = sorted(s.name for s in sources)
    for source in sources:
        writer.write_case(source.name, volumes=[source.volume_entry()])
    n_val = int(round(spec.render.val_fraction * len(names))) if len(names) > 1 else 0
    writer.write_splits(train=names[: len(names) - n_val], val=names[len(names) - n_val:])


def _ray_task(out_dir: str, source: CaseSource, spec_dict: dict, seed: int, scenes: list) -> Summary:
    spec = SceneSpec.from_dict(spec_dict)
    writer = FluoroSegWriter(out_dir, remove_temp_files=False)
    return _run_scenes(prepare_case(source, spec), writer, spec, seed, [range(a, b) for a, b in scenes], None)


def _run_ray(out_dir, sources, spec, seed, chunks_per_task, ray_address, progress: Progress) -> Summary:
    try:
        import ray
    except ImportError:
        raise ValueError("backend='ray' needs the optional dependency ray (pip install 'ray[default]')") from None
    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    task = ray.remote(_ray_task)
    futures = []
    for source in sources:
        scenes = [(s.start, s.stop) for s in _scene_chunks(spec)]
        for k in range(0, len(scenes), chunks_per_task):
            part = scenes[k:k + chunks_per_task]
            futures.append((sum(b - a for a, b in part), task.remote(str(out_dir), source, spec.to_dict(), seed, part)))
    summary = Summary()
    pending = {f: n for n, f in futures}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for f in done:
            part = ray.get(f)
            summary.add(part)
            progress.update(pending.pop(f))
    return summary


def generate(out_dir, cases: Sequence[CaseSource] | None = None, spec: SceneSpec | None = None, *, seed: int | None = None,
             resume: bool = False, progress: bool = True, backend: str = "local", ray_address: str | None = None,
             chunks_per_task: int = 4) -> Summary:
    """Generate a FluoroSeg dataset under ``out_dir``.

    Args:
      out_dir: dataset root (created).
      cases: the ``CaseSource`` s (default: the bundled example); names must be unique.
      spec: the ``SceneSpec`` (default ``SceneSpec()``).
      seed: overrides ``spec.seed``.
      resume: continue a partial dataset, skipping complete images; without it a case that
        already has images raises ValueError.
      progress: show a progress bar (tqdm if installed, else lines on stderr).
      backend: "local" or "ray" (see the module docstring).
      ray_address: the Ray cluster to join (None: start or join a local one).
      chunks_per_task: scenes per Ray task.
    Returns:
      ``Summary``.
    """
    spec = SceneSpec() if spec is None else spec
    seed = spec.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if isinstance(chunks_per_task, bool) or not isinstance(chunks_per_task, int) or chunks_per_task < 1:
        raise ValueError(f"chunks_per_task must be a positive integer, got {chunks_per_task!r}")
    sources = list(cases) if cases is not None else [example_case()]
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or not sources:
        raise ValueError(f"case names must be unique and at least one case given, got {names}")
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
            summary = _run_ray(out_dir, sources, spec, seed, chunks_per_task, ray_address, bar)
        else:
            summary = Summary()
            for source in sources:
                begin = time.perf_counter()
                prepared = prepare_case(source, spec)
                summary.stages["prepare"] = summary.stages.get("prepare", 0.0) + time.perf_counter() - begin
                summary.add(_run_scenes(prepared, writer, spec, seed, _scene_chunks(spec), bar))
    finally:
        bar.close()
    _finish(writer, sources, spec)
    summary.cases = len(sources)
    summary.seconds = time.perf_counter() - start
    return summary
