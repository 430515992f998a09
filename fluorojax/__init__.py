"""fluorojax: differentiable X-ray simulation in pure JAX.

CT volumes and label maps in, DRRs, masks and FluoroSeg datasets out; every array function
is jittable, vmappable and differentiable. See the README for the conventions.
"""

import importlib
import types

from fluorojax import augment, interop, io, physics, registration, simulate, transforms, viz
from fluorojax.camera import Camera, OrthographicCamera, carm_pose, look_at
from fluorojax.mesh import Mesh, load_mesh
from fluorojax.physics import spectrum
from fluorojax.raycast import LabelTrace, line_integrals, render, render_labels, render_with_labels, trace_labels
from fluorojax.raycast.mesh_render import MeshRender, render_mesh
from fluorojax.raycast.mesh_soft import render_mesh_soft
from fluorojax.registration import register, register_views
from fluorojax.simulate import render_augmented, render_polychromatic, render_scene
from fluorojax.tools import Tool
from fluorojax.volume import Volume, example_paths, hu_to_mu, load_example, load_volume

__version__ = "0.1.0"

_LAZY_SUBPACKAGES = ("fluoroseg", "scene")
"""Loaded on first use: the dataset format and the generator bring host-side libraries
(pycocotools, ijson, tifffile, trimesh) that rendering does not need."""


def __getattr__(name: str) -> types.ModuleType:
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"fluorojax.{name}")
    raise AttributeError(f"module 'fluorojax' has no attribute {name!r}")


__all__ = [
    "Camera",
    "LabelTrace",
    "Mesh",
    "MeshRender",
    "OrthographicCamera",
    "Tool",
    "augment",
    "fluoroseg",
    "interop",
    "io",
    "load_mesh",
    "physics",
    "register",
    "register_views",
    "registration",
    "render_augmented",
    "render_mesh",
    "render_mesh_soft",
    "render_polychromatic",
    "render_scene",
    "scene",
    "simulate",
    "spectrum",
    "Volume",
    "carm_pose",
    "example_paths",
    "hu_to_mu",
    "line_integrals",
    "load_example",
    "load_volume",
    "look_at",
    "render",
    "render_labels",
    "render_with_labels",
    "trace_labels",
    "transforms",
    "viz",
]
