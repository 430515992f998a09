"""Scenes and dataset generation: specs, devices, views, tools, batched rendering, the generator.

``generate(out_dir, cases, spec, seed=...)`` turns CTs with label maps into a FluoroSeg dataset;
see ``fluorojax.scene.generate`` for keys, resume, backends and the CT folder layout.
"""

from fluorojax.scene.devices import Device, sample_device
from fluorojax.scene.generate import (
    CaseSource,
    Summary,
    example_case,
    find_cases,
    generate,
    image_key,
    prepare_case,
    regenerate_image,
    render_scene_images,
)
from fluorojax.scene.placement import ToolPlacement, build_tool, sample_tools
from fluorojax.scene.spec import DeviceRanges, RenderConfig, SceneSpec, ToolConfig, ViewConfig, load_spec, save_spec
from fluorojax.scene.views import Anatomy, StandardView, View, anatomy_from_labels, sample_view

__all__ = (
    "Anatomy",
    "CaseSource",
    "Device",
    "DeviceRanges",
    "RenderConfig",
    "SceneSpec",
    "StandardView",
    "Summary",
    "ToolConfig",
    "ToolPlacement",
    "View",
    "ViewConfig",
    "anatomy_from_labels",
    "build_tool",
    "example_case",
    "find_cases",
    "generate",
    "image_key",
    "load_spec",
    "prepare_case",
    "regenerate_image",
    "render_scene_images",
    "sample_device",
    "sample_tools",
    "sample_view",
    "save_spec",
)
