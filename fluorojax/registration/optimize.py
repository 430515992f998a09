"""Intensity-based 2D/3D registration: optimise a camera pose so its DRR matches a target image.

The pose is parameterised as a rigid correction of the anatomy in the frame of the initial
camera, about a pivot (default the volume centre):

  * ``"rotation_translation"``: a rotation vector ``rotation`` (3,) rad about the pivot, then a
    translation ``translation`` (3,) mm along the initial camera's axes (x: image columns,
    y: image rows, z: depth, toward the detector);
  * ``"se3"``: a twist ``(translation, rotation)`` in se(3) about the pivot, exponentiated.

With D the correction, ``camera_from_world = D @ inv(init_pose)``, i.e.
``pose = init_pose @ inv(D)``; zero parameters give the initial pose. With several views
(``register_views``) the cameras are rigidly linked: view k's pose is
``pose_0 @ inv(init_0) @ init_k``, one correction for all, and the loss is the mean over views.

Each level of a coarse-to-fine pyramid renders with a camera of ``f`` times fewer, ``f`` times
larger pixels covering the same detector, against the target (and mask) averaged over ``f`` x
``f`` blocks. Each level runs optax steps in a ``lax.while_loop`` that stops early when the loss
has not improved by ``tol`` for ``patience`` steps and hands its best parameters to the next.
One optimiser state (e.g. Adam's moments) runs through all levels, so the pose does not jump
at a level change; its unit-rate updates are scaled per parameter group (rotation rad,
translation mm) by the level's learning rate on a cosine decay over the level's steps.

Several starts (initial poses given, or the candidates of the global search) run the coarsest
level together (``vmap``); the start with the lowest loss there continues alone through the
finer levels. The optional global search (``search=True``) renders a grid of rotations at the
coarsest level and, for each, scores every in-plane shift of the DRR against the target (an
exhaustive search of the translation across the beam); the best candidates start the
gradient descent. The whole registration is one jitted call on hashable static ``Settings``,
so repeated calls with the same shapes and settings compile once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import IO, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fluorojax.camera import CAMERA_TYPES, Camera, OrthographicCamera
from fluorojax.raycast import render
from fluorojax.registration.metrics import gradient_field_alignment
from fluorojax.registration.preprocess import saturation_mask
from fluorojax.transforms import apply_pose, invert_pose, make_pose, se3_exp, so3_exp
from fluorojax.volume import Volume

PARAMETERIZATIONS = ("rotation_translation", "se3")
DEFAULT_SCALES = (4, 2, 1)
MIN_DEFAULT_LEVEL_PX = 16
"""The default pyramid keeps only the factors of ``DEFAULT_SCALES`` that divide the image and
leave at least this many pixels along each side (small images register at full size)."""
DEFAULT_STEPS = 60


class Search(NamedTuple):
    """The global search of ``register(..., search=...)`` (static, hashable).

    Attributes:
      range_deg: rotations of up to this many degrees about each camera axis are tried.
      range_mm: translations across the beam of up to this many mm (at the pivot's depth).
      points: grid points per rotation axis (odd, so that the start itself is one of them).
      keep: candidates that start the gradient descent at the coarsest level.
    """

    range_deg: float = 20.0
    range_mm: float = 40.0
    points: int = 5
    keep: int = 4


class Settings(NamedTuple):
    """Static settings of one registration (hashable: the jit cache key)."""

    similarity: Callable
    method: str
    render_kwargs: tuple
    scales: tuple
    steps: tuple
    optimizer: Callable
    parameterization: str
    patience: int
    search: Search | None
    shift: int  # in-plane shifts of the search, +/- pixels at the coarsest level


class RegistrationResult(NamedTuple):
    """The outcome of ``register`` / ``register_views``.

    Attributes:
      pose: (4, 4) world_from_camera of the first view, the best pose found.
      loss: () its loss (minus the similarity, averaged over views) at the finest level.
      losses: (T,) loss per step of the winning start, T = sum of the steps per level; after an
        early stop within a level the remaining entries repeat the level's last value.
      poses: (T, 4, 4) the first view's pose evaluated at each step (its loss in ``losses``).
      level: (T,) int32 pyramid level of each step (0 = the coarsest).
      steps_taken: (L,) int32 steps actually run per level by the winning start.
      start: () int32 index of the winning start (a given initial pose, or with a search the
        rank of the search candidate).
      start_losses: (S,) every start's best loss at the coarsest level.
      start_poses: (S, 4, 4) every start's best pose at the coarsest level.
      view_poses: (V, 4, 4) the final pose of every view (V = 1 for ``register``).
    """

    pose: jax.Array
    loss: jax.Array
    losses: jax.Array
    poses: jax.Array
    level: jax.Array
    steps_taken: jax.Array
    start: jax.Array
    start_losses: jax.Array
    start_poses: jax.Array
    view_poses: jax.Array

    def animate(
        self,
        path: str | os.PathLike | IO[bytes],
        volume: Volume,
        camera: Camera,
        target_image: np.ndarray | jax.Array,
        *,
        method: str = "siddon",
        every: int = 1,
        duration_ms: int = 80,
        render_kwargs: dict[str, Any] | None = None,
    ) -> str | os.PathLike | IO[bytes]:
        """Write an animated GIF of the DRR's edges (green) over the target, one frame per
        ``every`` steps of ``poses`` plus the final pose; see ``animate.write_animation``."""
        from fluorojax.registration.animate import write_animation

        poses = np.concatenate([np.asarray(self.poses)[::every], np.asarray(self.pose)[None]])
        return write_animation(
            path,
            volume,
            camera,
            target_image,
            poses,
            method=method,
            duration_ms=duration_ms,
            render_kwargs=render_kwargs,
        )


def correction_to_pose(
    params: dict[str, jax.Array],
    init_pose: jax.Array,
    pivot: jax.Array,
    parameterization: str = "rotation_translation",
) -> jax.Array:
    """Pose (4, 4) world_from_camera from correction parameters about ``pivot``.

    Args:
      params: {"rotation": (3,) rad, "translation": (3,) mm}; see the module docstring.
      init_pose: (4, 4) world_from_camera that zero parameters give back.
      pivot: (3,) world mm, the centre of rotation (e.g. the volume centre).
      parameterization: ``"rotation_translation"`` or ``"se3"``.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    c = apply_pose(invert_pose(init_pose), pivot)  # pivot in the initial camera frame
    to_pivot = make_pose(jnp.eye(3, dtype=jnp.float32), c)
    from_pivot = make_pose(jnp.eye(3, dtype=jnp.float32), -c)
    if parameterization == "se3":
        motion = se3_exp(jnp.concatenate([params["translation"], params["rotation"]]))
        correction = to_pivot @ motion @ from_pivot
    else:
        rotation = so3_exp(params["rotation"])
        correction = make_pose(rotation, c - rotation @ c + params["translation"])
    return init_pose @ invert_pose(correction)


def pyramid_camera(camera: Camera | OrthographicCamera, factor: int) -> Camera | OrthographicCamera:
    """The camera with ``factor`` times fewer and larger pixels covering the same detector.

    ``factor`` must divide the camera's height and width.
    """
    return camera.binned(factor)


def downsample(image: jax.Array, factor: int) -> jax.Array:
    """Mean over ``factor`` x ``factor`` blocks: (H, W) -> (H // factor, W // factor)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3))


def _view_poses(params, inits, pivot, parameterization):
    """(V, 4, 4) poses of rigidly linked views for correction ``params`` of view 0."""
    pose0 = correction_to_pose(params, inits[0], pivot, parameterization)
    return pose0 @ invert_pose(inits[0]) @ inits


def _level_loss(params, volume, cameras, targets, masks, inits, pivot, settings):
    """Minus the similarity averaged over views for correction ``params``."""
    poses = _view_poses(params, inits, pivot, settings.parameterization)
    kwargs = dict(settings.render_kwargs)
    total = 0.0
    for v, (camera, target, mask) in enumerate(zip(cameras, targets, masks)):
        total = total + settings.similarity(render(volume, camera, poses[v], settings.method, **kwargs), target, mask)
    return -total / len(cameras)


def _cosine(step, n_steps, decay):
    """Cosine decay factor from 1 at step 0 to ``decay`` at ``n_steps``."""
    k = jnp.minimum(step, n_steps).astype(jnp.float32) / n_steps
    return decay + (1.0 - decay) * 0.5 * (1.0 + jnp.cos(jnp.pi * k))


def _run_level(loss_fn, params, state, tx, lr_rotation, lr_translation, lr_decay, tol, n_steps, patience):
    """One pyramid level: optax steps in a while_loop with early stopping.

    Returns (best params, best loss, optimiser state, losses (n_steps,), params history, steps taken).
    """
    history = jax.tree_util.tree_map(lambda p: jnp.zeros((n_steps,) + p.shape, p.dtype), params)
    init = (
        jnp.int32(0),
        params,
        state,
        params,
        jnp.float32(jnp.inf),
        jnp.int32(0),
        jnp.zeros((n_steps,), jnp.float32),
        history,
    )

    def cond(carry):
        step, _, _, _, _, stale, _, _ = carry
        return (step < n_steps) & (stale < patience)

    def body(carry):
        step, params, state, best, best_loss, stale, losses, history = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        losses = losses.at[step].set(loss)
        history = jax.tree_util.tree_map(lambda h, p: h.at[step].set(p), history, params)
        improved = loss < best_loss - tol
        best = jax.tree_util.tree_map(lambda b, p: jnp.where(improved, p, b), best, params)
        best_loss = jnp.where(improved, loss, best_loss)
        stale = jnp.where(improved, 0, stale + 1)
        updates, state = tx.update(grads, state, params)
        rate = _cosine(step, n_steps, lr_decay)
        updates = {
            "rotation": updates["rotation"] * (rate * lr_rotation),
            "translation": updates["translation"] * (rate * lr_translation),
        }
        return step + 1, optax.apply_updates(params, updates), state, best, best_loss, stale, losses, history

    steps, _, state, best, best_loss, _, losses, history = jax.lax.while_loop(cond, body, init)
    index = jnp.minimum(jnp.arange(n_steps), steps - 1)  # entries after an early stop repeat the last step
    return best, best_loss, state, losses[index], jax.tree_util.tree_map(lambda h: h[index], history), steps


def _rotation_grid(search):
    """(R, 3) rotation vectors rad: ``points`` angles per camera axis in +/- ``range_deg``."""
    angles = np.deg2rad(np.linspace(-search.range_deg, search.range_deg, search.points))
    grid = np.stack(np.meshgrid(angles, angles, angles, indexing="ij"), axis=-1).reshape(-1, 3)
    return jnp.asarray(grid, jnp.float32)


def _shifted_score(similarity, drr, target, mask, shift):
    """Similarity of the DRR moved by ``shift`` (rows, cols) pixels; uncovered pixels weigh 0."""
    h, w = drr.shape
    moved = jnp.roll(drr, shift, axis=(0, 1))
    rows = jnp.arange(h)[:, None] - shift[0]
    cols = jnp.arange(w)[None, :] - shift[1]
    # one pixel of margin: a 3 x 3 derivative must not see the wrapped seam
    covered = (rows >= 1) & (rows < h - 1) & (cols >= 1) & (cols < w - 1)
    return similarity(moved, target, mask * covered)


def _search(volume, camera, target, mask, inits, pivot, settings):
    """Top ``keep`` corrections of the grid search at one pyramid level, best first: params (K, 3)."""
    search = settings.search
    rotations = _rotation_grid(search)
    zero = jnp.zeros(3, jnp.float32)
    kwargs = dict(settings.render_kwargs)

    def drr(rotation):
        pose = correction_to_pose({"rotation": rotation, "translation": zero}, inits[0], pivot, "rotation_translation")
        return render(volume, camera, pose, settings.method, **kwargs)

    images = jax.lax.map(drr, rotations, batch_size=16)
    span = np.arange(-settings.shift, settings.shift + 1)
    shifts = jnp.asarray(np.stack(np.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2), jnp.int32)
    score_shifts = jax.vmap(
        lambda image, shift: _shifted_score(settings.similarity, image, target, mask, shift), (None, 0)
    )
    scores = jax.vmap(score_shifts, (0, None))(images, shifts).reshape(-1)
    _, best = jax.lax.top_k(scores, search.keep)
    rotation = rotations[best // shifts.shape[0]]
    shift = shifts[best % shifts.shape[0]].astype(jnp.float32)
    depth = apply_pose(invert_pose(inits[0]), pivot)[2]
    # mm at the pivot's depth per (col, row) pixel; parallel rays are not magnified
    per_pixel = camera.pixel_size * depth / camera.sdd if isinstance(camera, Camera) else camera.pixel_size
    translation = jnp.stack([shift[:, 1] * per_pixel[0], shift[:, 0] * per_pixel[1], jnp.zeros_like(shift[:, 0])], -1)
    return {"rotation": rotation, "translation": translation}


def _take(tree, index):
    """Entry ``index`` of every leaf of a batched pytree."""
    return jax.tree_util.tree_map(lambda a: a[index], tree)


def _pyramid(cameras, targets, masks, factor):
    if factor == 1:
        return cameras, targets, masks
    return (
        tuple(pyramid_camera(c, factor) for c in cameras),
        tuple(downsample(t, factor) for t in targets),
        tuple(downsample(m, factor) for m in masks),
    )


def _register_views(
    volume, cameras, targets, masks, inits, pivot, lr_rotation, lr_translation, lr_decay, tol, settings
):
    """inits (S, V, 4, 4); lr_* (L, 3) per level and camera axis. Returns the fields of
    ``RegistrationResult`` but ``level``."""
    tx = settings.optimizer(1.0)
    levels = [_pyramid(cameras, targets, masks, f) for f in settings.scales]

    def loss_at(level, views):
        cams, tgts, msks = levels[level]
        return lambda p: _level_loss(p, volume, cams, tgts, msks, views, pivot, settings)

    zeros = {"rotation": jnp.zeros(3, jnp.float32), "translation": jnp.zeros(3, jnp.float32)}
    if settings.search is None:
        starts = jax.tree_util.tree_map(lambda z: jnp.broadcast_to(z, (inits.shape[0],) + z.shape), zeros)
        start_views = inits
    else:
        cams, tgts, msks = levels[0]
        found = jax.vmap(lambda views: _search(volume, cams[0], tgts[0], msks[0], views, pivot, settings))(inits)
        starts = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), found)
        start_views = jnp.repeat(inits, settings.search.keep, axis=0)

    def coarsest(params, views):
        return _run_level(
            loss_at(0, views),
            params,
            tx.init(params),
            tx,
            lr_rotation[0],
            lr_translation[0],
            lr_decay,
            tol,
            settings.steps[0],
            settings.patience,
        )

    params, loss, state, losses, history, taken = jax.vmap(coarsest)(starts, start_views)
    start = jnp.argmin(jnp.where(jnp.isfinite(loss), loss, jnp.inf)).astype(jnp.int32)
    start_losses = loss
    start_poses = jax.vmap(lambda p, views: _view_poses(p, views, pivot, settings.parameterization)[0])(
        params, start_views
    )
    params, loss, state, views, history = (_take(x, start) for x in (params, loss, state, start_views, history))
    all_losses, all_history, all_taken = [losses[start]], [history], [taken[start]]
    for level in range(1, len(settings.scales)):
        params, loss, state, losses, history, taken = _run_level(
            loss_at(level, views),
            params,
            state,
            tx,
            lr_rotation[level],
            lr_translation[level],
            lr_decay,
            tol,
            settings.steps[level],
            settings.patience,
        )
        all_losses.append(losses)
        all_history.append(history)
        all_taken.append(taken)
    history = jax.tree_util.tree_map(lambda *h: jnp.concatenate(h), *all_history)
    poses = jax.vmap(lambda p: _view_poses(p, views, pivot, settings.parameterization)[0])(history)
    view_poses = _view_poses(params, views, pivot, settings.parameterization)
    return (
        view_poses[0],
        loss,
        jnp.concatenate(all_losses),
        poses,
        jnp.stack(all_taken),
        start,
        start_losses,
        start_poses,
        view_poses,
    )


_register_jit = jax.jit(_register_views, static_argnames=("settings",))


def _per_level(name, value, n_levels):
    """(L, 3) rates: one value, one per level (L,), or one per level and camera axis (L, 3)."""
    value = np.asarray(value, np.float64)
    if value.ndim == 1:
        value = value[:, None]
    try:
        values = np.broadcast_to(value, (n_levels, 3))
    except ValueError:
        raise ValueError(
            f"register: {name} must be one value, one per pyramid level ({n_levels}) or ({n_levels}, 3), got shape {value.shape}"
        ) from None
    if not np.all((values >= 0) & np.isfinite(values)) or not np.any(values > 0):
        raise ValueError(f"register: {name} must be >= 0 and not all 0, got {value.tolist()}")
    return jnp.asarray(values, jnp.float32)


def register_views(
    volume: Volume,
    cameras: Sequence[Camera | OrthographicCamera],
    target_images: Sequence[jax.Array],
    init_poses: jax.Array,
    *,
    similarity: Callable = gradient_field_alignment,
    method: str = "siddon",
    steps: int | Sequence[int] = DEFAULT_STEPS,
    scales: Sequence[int] | None = None,
    lr_rotation: float | Sequence[float] | jax.Array = 1e-2,
    lr_translation: float | Sequence[float] | jax.Array = 1.0,
    lr_decay: float = 0.05,
    optimizer: Callable = optax.adam,
    parameterization: str = "rotation_translation",
    pivot: jax.Array | None = None,
    masks: Sequence[jax.Array | None] | None = None,
    search: bool | Search = False,
    patience: int = 20,
    tol: float = 1e-6,
    render_kwargs: dict | None = None,
) -> RegistrationResult:
    """Find one patient pose that matches several X-rays taken with known relative camera poses.

    Args:
      volume: scalar volume (I, J, K), e.g. mu in 1/mm.
      cameras: a sequence of V ``Camera`` (one per view; shapes may differ).
      target_images: V images, each (H_v, W_v) like its camera (any intensity scale the
        similarity tolerates; for radiographs the -log image, brighter = more attenuation).
      init_poses: (V, 4, 4) world_from_camera of every view at the initial guess, or
        (S, V, 4, 4) for S starts; the relative poses ``inv(init[0]) @ init[v]`` are known and
        kept (e.g. a biplane C-arm).
      similarity: ``f(drr, target, mask) -> scalar``, higher is better; default
        ``gradient_field_alignment`` (normalised gradient fields: on mismatched-physics targets
        NCC and gradient NCC settle 2-80 mm off in depth where it does not, see
        benchmarks/results/register-robust.md). A
        static argument: reuse one function object (module-level, or one ``functools.partial``)
        so that calls do not recompile.
      method: ``"siddon"`` or ``"trilinear"`` rendering.
      steps: optimiser steps per pyramid level, an int (every level) or one per level.
      scales: pyramid downsampling factors, coarsest first; each must divide every view's H
        and W. Default: those of (4, 2, 1) that do and leave at least 16 pixels a side ((1,)
        for smaller images).
      lr_rotation: rotation learning rate (rad per step for Adam): one value, one per level
        (L,), or one per level and camera axis (L, 3) (x: columns, y: rows, z: depth).
      lr_translation: translation learning rate (mm per step for Adam), likewise; e.g. a 0 in
        the z column freezes the depth at that level.
      lr_decay: each level's rates follow a cosine decay to ``lr_decay`` times their initial
        value at the level's last step (1.0 keeps them constant).
      optimizer: ``learning_rate -> optax.GradientTransformation`` whose update is linear in
        the rate (default ``optax.adam``); built once with rate 1, its state carried across
        levels, its updates scaled per level and parameter group.
      parameterization: ``"rotation_translation"`` or ``"se3"`` (module docstring).
      pivot: (3,) world mm centre of rotation; default ``volume.center``.
      masks: V optional (H_v, W_v) weights in [0, 1] (0 ignores a pixel); default per view
        ``saturation_mask`` of the target (clipped pixels and collimator edges are ignored).
      search: False, True (``Search()``: +/- 20 deg, +/- 40 mm) or a ``Search``: a global
        search at the coarsest level before the gradient descent (view 0's image; requires
        ``"rotation_translation"``).
      patience: a level stops after this many steps without an improvement larger than ``tol``.
      tol: the loss improvement that counts.
      render_kwargs: extra keyword arguments of ``fluorojax.render`` (e.g. ``n_samples``).

    Returns:
      ``RegistrationResult``; ``pose`` is view 0's, ``view_poses`` all of them.
    """
    if not isinstance(volume, Volume) or volume.data.ndim != 3:
        raise TypeError(
            f"register: volume must be a scalar (I, J, K) Volume, got {type(volume).__name__} with data shape {getattr(volume, 'data', np.zeros(0)).shape}"
        )
    cameras = tuple(cameras)
    if not cameras or not all(isinstance(c, CAMERA_TYPES) for c in cameras):
        raise TypeError(
            f"register: cameras must be one or more Camera or OrthographicCamera, got {[type(c).__name__ for c in cameras]}"
        )
    if len(target_images) != len(cameras):
        raise ValueError(
            f"register: {len(cameras)} cameras need {len(cameras)} target images, got {len(target_images)}"
        )
    targets = tuple(jnp.asarray(t, jnp.float32) for t in target_images)
    for v, (camera, target) in enumerate(zip(cameras, targets)):
        if target.shape != camera.shape:
            raise ValueError(
                f"register: target_image {v} must be (H, W) = {camera.shape} like its camera, got {target.shape}"
            )
    if masks is None:
        masks = tuple(saturation_mask(t) for t in targets)
    else:
        masks = tuple(jnp.ones_like(t) if m is None else jnp.asarray(m, jnp.float32) for m, t in zip(masks, targets))
        if len(masks) != len(targets) or any(m.shape != t.shape for m, t in zip(masks, targets)):
            raise ValueError(
                f"register: mask must be like the targets {[t.shape for t in targets]}, got {[m.shape for m in masks]}"
            )
    inits = jnp.asarray(init_poses, jnp.float32)
    if inits.shape[-3:] != (len(cameras), 4, 4) or inits.ndim not in (3, 4):
        raise ValueError(
            f"register: init_pose must be ({len(cameras)}, 4, 4) or (S, {len(cameras)}, 4, 4) world_from_camera, got shape {inits.shape}"
        )
    if scales is None:
        scales = tuple(
            f
            for f in DEFAULT_SCALES
            if all(
                c.height % f == 0 and c.width % f == 0 and min(c.shape) // f >= MIN_DEFAULT_LEVEL_PX for c in cameras
            )
        )
        scales = scales or (1,)
    scales = tuple(int(s) for s in np.atleast_1d(scales))
    for s in scales:
        for c in cameras:
            pyramid_camera(c, s)
    steps = tuple(int(n) for n in np.broadcast_to(np.asarray(steps), (len(scales),)))
    if any(n < 1 for n in steps):
        raise ValueError(f"register: steps must be positive integers per level, got {steps}")
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"register: patience must be a positive integer number of steps, got {patience!r}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"register: parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    pivot = volume.center if pivot is None else jnp.asarray(pivot, jnp.float32)
    if pivot.shape != (3,):
        raise ValueError(f"register: pivot must be (3,) world mm, got shape {pivot.shape}")
    grid_search: Search | None
    if search is True:
        grid_search = Search()
    elif search is False or search is None:
        grid_search = None
    elif isinstance(search, Search):
        grid_search = search
    else:
        raise TypeError(f"register: search must be a bool or a Search, got {type(search).__name__}")
    shift = 0
    if grid_search is not None:
        if parameterization != "rotation_translation":
            raise ValueError(
                f"register: search needs parameterization 'rotation_translation', got {parameterization!r}"
            )
        points, keep = grid_search.points, grid_search.keep
        if points < 1 or points % 2 == 0 or keep < 1 or keep > points**3:
            raise ValueError(
                f"register: Search needs an odd number of points and 1 <= keep <= points^3, got {grid_search}"
            )
        coarse = pyramid_camera(cameras[0], scales[0])
        pixel = float(np.min(coarse.pixel_size))
        if isinstance(cameras[0], Camera):  # magnified by sdd / depth at the pivot's depth
            first = inits.reshape(-1, len(cameras), 4, 4)[:, 0]
            depth = float(np.min(np.asarray(apply_pose(invert_pose(first), pivot))[:, 2]))
            shift = int(math.ceil(grid_search.range_mm * float(cameras[0].sdd) / (depth * pixel)))
        else:  # parallel rays: no magnification
            shift = int(math.ceil(grid_search.range_mm / pixel))

    settings = Settings(
        similarity,
        method,
        tuple(sorted((render_kwargs or {}).items())),
        scales,
        steps,
        optimizer,
        parameterization,
        int(patience),
        grid_search,
        shift,
    )
    batch = inits if inits.ndim == 4 else inits[None]
    fields = _register_jit(
        volume,
        cameras,
        targets,
        masks,
        batch,
        pivot,
        _per_level("lr_rotation", lr_rotation, len(scales)),
        _per_level("lr_translation", lr_translation, len(scales)),
        jnp.float32(lr_decay),
        jnp.float32(tol),
        settings,
    )
    pose, loss, losses, poses, taken, start, start_losses, start_poses, view_poses = fields
    level = jnp.asarray(np.repeat(np.arange(len(steps), dtype=np.int32), steps))
    return RegistrationResult(pose, loss, losses, poses, level, taken, start, start_losses, start_poses, view_poses)


def register(
    volume: Volume,
    camera: Camera | OrthographicCamera,
    target_image: jax.Array,
    init_pose: jax.Array,
    *,
    mask: jax.Array | None = None,
    **options: Any,
) -> RegistrationResult:
    """Find the camera pose whose DRR of ``volume`` best matches ``target_image``.

    ``register_views`` with one view: ``camera`` a ``Camera``, ``target_image`` (H, W),
    ``init_pose`` (4, 4) world_from_camera or (S, 4, 4) starts, ``mask`` optional (H, W)
    weights (default ``saturation_mask(target_image)``); ``options`` as there (``similarity``,
    ``steps``, ``scales``, learning rates, ``search``, ...). With no options it runs the
    benchmark's settings: normalised gradient fields, a (4, 2, 1) pyramid of 60 steps per level, Adam at
    0.01 rad and 1 mm per step carried across levels.
    """
    if not isinstance(camera, CAMERA_TYPES):
        raise TypeError(f"register: camera must be a Camera or an OrthographicCamera, got {type(camera).__name__}")
    init = jnp.asarray(init_pose, jnp.float32)
    if init.shape[-2:] != (4, 4) or init.ndim not in (2, 3):
        raise ValueError(f"register: init_pose must be (4, 4) or (S, 4, 4) world_from_camera, got shape {init.shape}")
    target = jnp.asarray(target_image, jnp.float32)
    if target.shape != camera.shape:
        raise ValueError(f"register: target_image must be (H, W) = {camera.shape} like the camera, got {target.shape}")
    return register_views(
        volume, (camera,), (target,), init[..., None, :, :], masks=None if mask is None else (mask,), **options
    )
