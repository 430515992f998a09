"""Renderers: exact Siddon traversal, trilinear ray marching, camera DRRs and label travel."""

from fluorojax.raycast.drr import line_integrals, render
from fluorojax.raycast.labels import LabelTrace, render_labels, render_with_labels, trace_labels

__all__ = ["LabelTrace", "line_integrals", "render", "render_labels", "render_with_labels", "trace_labels"]
