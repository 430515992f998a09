"""Scenes and dataset generation: specs, devices, views, tools, batched rendering, the generator.

``generate(out_dir, cases, spec, seed=...)`` turns CTs with label maps into a FluoroSeg dataset;
see ``fluorojax.scene.generate`` for keys, resume, backends and the CT folder layout.
"""

from fluorojax.scene.devices import Device
from fluorojax.scene.devices import sample_device
from fluorojax.scene.generate import CaseSource
from fluorojax.scene.generate import Summary
from fluorojax.scene.generate import example_case
from fluorojax.scene.generate import find_cases
from fluorojax.scene.generate import generate
from fluorojax.scene.generate import image_key
from fluorojax.scene.generate import prepare_case
from fluorojax.scene.generate import regenerate_image
from fluorojax.scene.generate import render_scene_images
from fluorojax.scene.spec import DeviceRanges
from fluorojax.scene.spec import RenderConfig
from fluorojax.scene.spec import SceneSpec
from fluorojax.scene.spec import ToolConfig
from fluorojax.scene.spec import ViewConfig
from fluorojax.scene.spec import load_spec
from fluorojax.scene.spec import save_spec
from fluorojax.scene.placement import ToolPlacement
from fluorojax.scene.placement import build_tool
from fluorojax.scene.placement import sample_tools
from fluorojax.scene.views import Anatomy
from fluorojax.scene.views import StandardView
from fluorojax.scene.views import View
from fluorojax.scene.views import anatomy_from_labels
from fluorojax.scene.views import sample_view

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
