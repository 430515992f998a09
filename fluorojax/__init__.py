"""fluorojax: differentiable X-ray simulation in pure JAX.

CT volumes and label maps in, DRRs, masks and FluoroSeg datasets out; every array function
is jittable, vmappable and differentiable. See the README for the conventions.
"""

from fluorojax import augment, fluoroseg, physics, registration, scene, transforms
from fluorojax.camera import Camera, carm_pose, look_at
from fluorojax.mesh import Mesh, load_mesh
from fluorojax.physics import render_polychromatic, spectrum
from fluorojax.registration import register
from fluorojax.raycast import LabelTrace, line_integrals, render, render_labels, render_with_labels, trace_labels
from fluorojax.raycast.mesh_render import MeshRender, render_mesh
from fluorojax.raycast.mesh_soft import render_mesh_soft
from fluorojax.tools import Tool
from fluorojax.volume import Volume, example_paths, hu_to_mu, load_example, load_volume

__version__ = "0.1.0"

__all__ = [
    "Camera",
    "LabelTrace",
    "Mesh",
    "MeshRender",
    "Tool",
    "augment",
    "fluoroseg",
    "load_mesh",
    "physics",
    "register",
    "registration",
    "render_mesh",
    "render_mesh_soft",
    "render_polychromatic",
    "scene",
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
]
