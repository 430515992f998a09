"""Simulation: the layer that composes renderers, physics, masks and augmentation.

Everything below it (``raycast``, ``physics``, ``augment``) knows nothing of the others; the
functions here put them together: ``render_polychromatic`` (a CT in HU -> a polychromatic DRR),
``render_scene`` (a batch of views of a CT with tools: image, label and tool masks, travel and
depths), ``render_augmented`` (DRRs and masks through an augmentation pipeline in one call); the
generator and registration build on them.
"""

from fluorojax.simulate.augmented import render_augmented
from fluorojax.simulate.polychromatic import polychromatic_image, render_polychromatic
from fluorojax.simulate.scene import SceneRender, render_scene

__all__ = (
    "SceneRender",
    "polychromatic_image",
    "render_augmented",
    "render_polychromatic",
    "render_scene",
)
