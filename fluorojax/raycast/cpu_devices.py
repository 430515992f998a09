"""Rays split over the CPU devices: how the CPU Siddon uses more than one core.

XLA:CPU runs one program's work one operation after another, so the voxel traversal (a loop
whose every step is a few small array operations) keeps about one core busy however many
rays it carries; two independent loops in one program, or two programs on one device, run one
after the other too. Two CPU *devices* run at the same time. When JAX has more than one CPU
device and the CPU is its default backend, ``drr.exact_integrals`` splits the rays evenly over
a 1-D mesh of them (``jax.shard_map``; the volume replicated, the rays padded to a multiple of
the device count); with one CPU device its program is unchanged.

JAX makes one CPU device unless told otherwise before its first computation. To use n cores,
before anything runs on JAX (in a script, right after ``import jax``)::

    jax.config.update("jax_num_cpu_devices", os.cpu_count())

or set ``JAX_NUM_CPU_DEVICES=2`` in the environment (JAX raises a RuntimeError that says so
when the update comes too late). The ``fluorojax`` command does it by default. Every device
needs the whole volume: a volume on one device is copied to the others at every call (about
0.1 s for a 140 MB CT on 2 cores, more than the split saves at 200 x 200), so for repeated
renders place it on all of them once, ``volume = cpu_devices.replicate(volume)``. Under
``jax.default_device`` nothing is split (code that picks a device keeps its work there). Results of a split render live on all CPU devices
(committed there): they mix with arrays made by ``jnp`` / numpy and with other results, but not
with an array the user placed on one device with ``jax.device_put(x, device)``.

The decision is static, at trace time, and only where the CPU is the default backend, so a
GPU program never holds a CPU mesh; but a program traced in a CPU-only process with several
CPU devices is a multi-device program whatever platform it is lowered for, so export for
another platform (``jax.export``) from a process with one CPU device.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "rays"
T = TypeVar("T")


def ray_mesh() -> Mesh | None:
    """A 1-D mesh (axis ``"rays"``) of the CPU devices when the CPU is JAX's default backend, it
    has more than one device and no ``jax.default_device`` is in force (code that picks one device,
    e.g. ``fluorojax generate`` rendering one scene per device, keeps it); else None."""
    # a context-managed flag, read as an attribute (jax.config.read refuses it)
    if jax.config.jax_default_device is not None:  # type: ignore[attr-defined]
        return None
    return _cpu_mesh()


@functools.cache
def _cpu_mesh() -> Mesh | None:
    if jax.default_backend() != "cpu" or jax.device_count() < 2:
        return None
    return Mesh(np.array(jax.devices()), (AXIS,))


def replicate(tree: T) -> T:
    """``tree`` (e.g. a ``Volume``) placed whole on every CPU device of ``ray_mesh()``, so that a
    split render does not copy it there at every call; unchanged when there is no such mesh."""
    mesh = ray_mesh()
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))


def split_rays(fn: Callable[..., Any], mesh: Mesh, *args: jax.Array | None) -> Any:
    """``fn(*replicated, s, t)``, ``args = (*replicated, s, t)``, with the rays s, t (R, 3)
    split evenly over ``mesh``.

    Every device runs ``fn`` on its own R / n rays (padded with copies of the first ray, whose
    results are dropped) with the whole of every ``replicated`` argument (arrays or None).
    Returns ``fn``'s (R, ...) outputs, split over the devices by ray.
    """
    *replicated, s_in, t_in = args
    s, t = cast(jax.Array, s_in), cast(jax.Array, t_in)  # the rays: never None
    n_devices = mesh.devices.size
    n = s.shape[0]
    per_device = -(-n // n_devices)
    pad = per_device * n_devices - n
    if pad:
        s, t = (jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, 3))]) for x in (s, t))
    # check_vma=False: the traversal's loop state starts unvarying and becomes per-device;
    # cotangents of the replicated inputs are still summed over the devices.
    split = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(P(),) * len(replicated) + (P(AXIS), P(AXIS)),
        out_specs=P(AXIS),
        check_vma=False,
    )
    out = split(*replicated, s, t)
    return jax.tree_util.tree_map(operator.itemgetter(slice(0, n)), out) if pad else out
