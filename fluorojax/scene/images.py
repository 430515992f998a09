"""Rendering the images of one scene: plans drawn from the key tree, one batched render per
image size, and the records (image, annotations, camera, view, spectrum) the writer stores.

A scene is ``render.views_per_scene`` consecutive images of a case that share one tool
placement and one batched render call; a resumed run renders a partly written scene whole, so
it repeats the computation of an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax import _validate
from fluorojax.fluoroseg import Annotation, FluoroSegWriter, camera_dict, describe_tool
from fluorojax.physics import DEFAULT_MATERIALS, monochromatic, spectrum
from fluorojax.scene.cases import CaseSource, PreparedCase, prepare_case
from fluorojax.scene.devices import Device, sample_device
from fluorojax.scene.keys import DEVICE, NOISE, SCENE, VIEW, image_key
from fluorojax.scene.placement import ToolPlacement, build_tool, sample_tools
from fluorojax.scene.spec import SceneSpec
from fluorojax.scene.views import View, sample_view
from fluorojax.simulate.scene import SceneRender, render_scene

TOOL_CATEGORY_ID = 1000


@dataclasses.dataclass(frozen=True)
class ImagePlan:
    """What is drawn for one image before rendering: its index, key, device and view."""

    index: int
    key: jax.Array
    device: Device
    view: View


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

    def write(self, writer: FluoroSegWriter, case: str, seed: int) -> None:
        """Write this image into ``case`` of a FluoroSeg dataset, ``seed`` recorded with it."""
        writer.write_image(
            case,
            self.index,
            self.image,
            self.annotations,
            self.camera,
            view=self.view,
            spectrum=self.spectrum,
            seed=seed,
            extra=self.extra,
        )


def scene_chunks(spec: SceneSpec) -> list[range]:
    """The scenes of a case: ranges of ``views_per_scene`` consecutive image indices."""
    b, n = spec.render.views_per_scene, spec.images_per_ct
    return [range(start, min(start + b, n)) for start in range(0, n, b)]


def _spectrum(spec: SceneSpec, device: Device):
    if spec.render.mode == "mono":
        return monochromatic(spec.render.mono_energy_kev), {"mode": "mono", "energy_kev": spec.render.mono_energy_kev}
    return spectrum(device.kvp, spec.device.spectrum_bins), {
        "mode": "poly",
        "kvp": device.kvp,
        "bins": spec.device.spectrum_bins,
    }


def _tool_hits_layers(hits: np.ndarray) -> np.ndarray:
    """(H, W, K) ascending crossings -> (K / 2, 2, H, W) nested entry / exit layers."""
    entry, exit_ = hits[..., 0::2], hits[..., 1::2]
    valid = np.logical_and.accumulate(np.isfinite(entry) & np.isfinite(exit_), axis=-1)
    layers = np.stack([np.where(valid, entry, np.inf), np.where(valid, exit_, np.inf)])  # (2, H, W, P)
    return np.moveaxis(layers, -1, 0)


def _annotations(
    prepared: PreparedCase, spec: SceneSpec, out: SceneRender, b: int, tools: Sequence[ToolPlacement]
) -> list:
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
        descriptions = describe_tool(placement.kind, placement.material)
        extra = {"tool_kind": placement.kind, "material": placement.material}
        if kind == "travel":
            annotations.append(Annotation(TOOL_CATEGORY_ID, travel=t_travel, descriptions=descriptions, extra=extra))
        elif kind == "binary":
            annotations.append(Annotation(TOOL_CATEGORY_ID, mask=t_travel > 0, descriptions=descriptions, extra=extra))
        else:
            layers = _tool_hits_layers(np.asarray(out.tool_hits[t, b]))
            if np.isfinite(layers[0, 0]).any():
                annotations.append(Annotation(TOOL_CATEGORY_ID, hits=layers, descriptions=descriptions, extra=extra))
    return annotations


def render_scene_images(
    prepared: PreparedCase, spec: SceneSpec, seed: int, indices: Sequence[int], stages: dict | None = None
) -> list[ImageRecord]:
    """Render the scene that holds images ``indices`` (consecutive, one scene) of a case.

    Every image of the scene is rendered (padded to ``views_per_scene`` views per image size),
    so a resumed run repeats the computation of an uninterrupted one exactly.
    """
    case = prepared.source.name
    indices = list(indices)
    first = indices[0]
    if first % spec.render.views_per_scene or len(indices) > spec.render.views_per_scene:
        raise ValueError(f"indices {indices} are not one scene of {spec.render.views_per_scene} views")
    tools = sample_tools(jax.random.fold_in(image_key(seed, case, first), SCENE), prepared.anatomy, spec.tools)
    built = [build_tool(t) for t in tools]
    plans = []
    for index in indices:
        key = image_key(seed, case, index)
        device = sample_device(jax.random.fold_in(key, DEVICE), spec.device)
        view = sample_view(jax.random.fold_in(key, VIEW), prepared.anatomy, spec.views, device.source_to_isocenter)
        plans.append(ImagePlan(index, key, device, view))
    records = {}
    by_size: dict[tuple[int, int], list[ImagePlan]] = {}
    for plan in plans:
        by_size.setdefault((plan.device.height, plan.device.width), []).append(plan)
    noise = spec.device.photons is not None
    for size in sorted(by_size):
        group = by_size[size]
        padded = group + [group[-1]] * (spec.render.views_per_scene - len(group))
        cameras = [p.device.camera() for p in padded]
        poses = np.stack([p.view.pose(prepared.anatomy.frame) for p in padded])
        spectra = [_spectrum(spec, p.device)[0] for p in padded]
        keys = jnp.stack([jax.random.fold_in(p.key, NOISE) for p in padded]) if noise else None
        photons = np.asarray([p.device.photons for p in padded], np.float32) if noise else None
        out = render_scene(
            prepared.densities,
            prepared.label_ids,
            cameras,
            poses,
            spectra,
            built,
            keys,
            photons,
            materials=DEFAULT_MATERIALS,
            tool_materials=spec.tools.materials,
            replace_tissue=spec.tools.replace_tissue,
            max_hits=spec.tools.max_hits,
            stages=stages,
        )
        start = time.perf_counter()
        images = np.asarray(out.image)
        for b, plan in enumerate(group):
            index, device, view = plan.index, plan.device, plan.view
            records[index] = ImageRecord(
                index=index,
                image=images[b],
                annotations=_annotations(prepared, spec, out, b, tools),
                camera=camera_dict(cameras[b], poses[b]),
                view=view.to_dict(),
                spectrum=_spectrum(spec, device)[1],
                extra={
                    "case": case,
                    "device": device.to_dict(),
                    "tools": [t.to_dict() for t in tools],
                    "scene": first // spec.render.views_per_scene,
                },
            )
        if stages is not None:
            stages["annotate"] = stages.get("annotate", 0.0) + time.perf_counter() - start
    return [records[i] for i in indices]


def regenerate_image(source: CaseSource, spec: SceneSpec, seed: int, index: int) -> ImageRecord:
    """Image ``index`` of ``source`` exactly as the generator renders it with ``spec`` and ``seed``."""
    index = _validate.integer("image index", index, minimum=0, maximum=spec.images_per_ct - 1)
    scene = scene_chunks(spec)[index // spec.render.views_per_scene]
    records = render_scene_images(prepare_case(source, spec), spec, seed, scene)
    return records[index - scene.start]
