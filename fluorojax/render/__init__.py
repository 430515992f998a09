"""Renderers: exact Siddon traversal, trilinear ray marching and camera DRRs."""

from fluorojax.render.drr import line_integrals, render

__all__ = ["line_integrals", "render"]
