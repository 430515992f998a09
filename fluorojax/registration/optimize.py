"""Intensity-based 2D/3D registration: optimise a camera pose so its DRR matches a target image.

The pose is parameterised as a rigid correction of the anatomy in the frame of the initial
camera, about a pivot (default the volume centre):

  * ``"rotation_translation"``: a rotation vector ``rotation`` (3,) rad about the pivot, then a
    translation ``translation`` (3,) mm along the initial camera's axes (x: image columns,
    y: image rows, z: depth, toward the detector);
  * ``"se3"``: a twist ``(translation, rotation)`` in se(3) about the pivot, exponentiated.

With D the correction, ``camera_from_world = D @ inv(init_pose)``, i.e.
``pose = init_pose @ inv(D)``; zero parameters give the initial pose. Rotation and translation
have separate learning rates (one optax optimiser each, via ``optax.multi_transform``).

Each level of a coarse-to-fine pyramid renders with a camera of ``f`` times fewer, ``f`` times
larger pixels covering the same detector, against the target (and mask) averaged over ``f`` x
``f`` blocks. Each level runs an optax loop (``lax.while_loop``), with learning rates on a
cosine decay over the level's steps and a fresh optimiser state, that stops early when the
loss has not improved by ``tol`` for ``patience`` steps, and hands its best parameters to the
next. Several initial poses are optimised at once with ``vmap`` and the start with the lowest
final loss wins. The whole optimisation is one jitted call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fluorojax.camera import CAMERA_TYPES, Camera
from fluorojax.registration.metrics import ncc
from fluorojax.raycast import render
from fluorojax.transforms import apply_pose, invert_pose, make_pose, se3_exp, so3_exp
from fluorojax.volume import Volume

PARAMETERIZATIONS = ("rotation_translation", "se3")


class RegistrationResult(NamedTuple):
    """The outcome of ``register``.

    Attributes:
      pose: (4, 4) world_from_camera, the best pose of the winning start.
      loss: () its loss (minus the similarity) at the finest level.
      losses: (T,) loss per step of the winning start, T = sum of the steps per level; after an
        early stop within a level the remaining entries repeat the level's last value.
      poses: (T, 4, 4) the pose evaluated at each step (the loss in ``losses`` is its loss).
      level: (T,) int32 pyramid level of each step (0 = the coarsest).
      steps_taken: (L,) int32 steps actually run per level by the winning start.
      start: () int32 index of the winning initial pose.
      start_losses: (S,) final loss of every start.
      start_poses: (S, 4, 4) final pose of every start.
    """

    pose: jnp.ndarray
    loss: jnp.ndarray
    losses: jnp.ndarray
    poses: jnp.ndarray
    level: jnp.ndarray
    steps_taken: jnp.ndarray
    start: jnp.ndarray
    start_losses: jnp.ndarray
    start_poses: jnp.ndarray


def correction_to_pose(params, init_pose, pivot, parameterization="rotation_translation"):
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


def pyramid_camera(camera: Camera, factor: int) -> Camera:
    """The camera with ``factor`` times fewer and larger pixels covering the same detector.

    ``factor`` must divide the camera's height and width.
    """
    return camera.binned(factor)


def downsample(image, factor: int):
    """Mean over ``factor`` x ``factor`` blocks: (H, W) -> (H // factor, W // factor)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3))


def _make_optimizer(optimizer, lr_rotation, lr_translation, lr_decay, n_steps):
    """Two optimisers (rotation, translation), each on a cosine decay from lr to lr * lr_decay."""
    labels = {"rotation": "rotation", "translation": "translation"}

    def schedule(lr):
        return optax.cosine_decay_schedule(lr, n_steps, alpha=lr_decay)

    return optax.multi_transform(
        {"rotation": optimizer(schedule(lr_rotation)), "translation": optimizer(schedule(lr_translation))}, labels
    )


def _run_level(loss_fn, params, tx, n_steps, patience, tol):
    """One pyramid level: optax steps in a while_loop with early stopping.

    Returns (best params, best loss, losses (n_steps,), params history, steps taken).
    """
    history = jax.tree_util.tree_map(lambda p: jnp.zeros((n_steps,) + p.shape, p.dtype), params)
    init = (
        jnp.int32(0),
        params,
        tx.init(params),
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
        return step + 1, optax.apply_updates(params, updates), state, best, best_loss, stale, losses, history

    steps, _, _, best, best_loss, _, losses, history = jax.lax.while_loop(cond, body, init)
    # entries after an early stop repeat the last evaluated step
    index = jnp.minimum(jnp.arange(n_steps), steps - 1)
    losses = losses[index]
    history = jax.tree_util.tree_map(lambda h: h[index], history)
    return best, best_loss, losses, history, steps


def _register_one(volume, camera, target, mask, init_pose, pivot, lr_rotation, lr_translation, lr_decay, tol, *, similarity, method, render_kwargs, scales, steps, optimizer, parameterization, patience):
    params = {"rotation": jnp.zeros(3, jnp.float32), "translation": jnp.zeros(3, jnp.float32)}
    kwargs = dict(render_kwargs)
    all_losses, all_params, taken = [], [], []
    best_loss = jnp.float32(jnp.inf)
    for factor, n_steps in zip(scales, steps):
        cam = pyramid_camera(camera, factor) if factor > 1 else camera
        tgt = downsample(target, factor) if factor > 1 else target
        msk = downsample(mask, factor) if factor > 1 else mask

        def loss_fn(p, cam=cam, tgt=tgt, msk=msk):
            pose = correction_to_pose(p, init_pose, pivot, parameterization)
            return -similarity(render(volume, cam, pose, method, **kwargs), tgt, msk)

        tx = _make_optimizer(optimizer, lr_rotation, lr_translation, lr_decay, n_steps)
        params, best_loss, losses, history, n = _run_level(loss_fn, params, tx, n_steps, patience, tol)
        all_losses.append(losses)
        all_params.append(history)
        taken.append(n)
    history = jax.tree_util.tree_map(lambda *h: jnp.concatenate(h), *all_params)
    poses = jax.vmap(lambda p: correction_to_pose(p, init_pose, pivot, parameterization))(history)
    pose = correction_to_pose(params, init_pose, pivot, parameterization)
    return pose, best_loss, jnp.concatenate(all_losses), poses, jnp.stack(taken)


_STATIC = ("similarity", "method", "render_kwargs", "scales", "steps", "optimizer", "parameterization", "patience")


@jax.jit
def _select(pose, loss, losses, poses, taken):
    start = jnp.argmin(jnp.where(jnp.isfinite(loss), loss, jnp.inf)).astype(jnp.int32)
    return pose[start], loss[start], losses[start], poses[start], taken[start], start


def _register_batch(volume, camera, target, mask, init_poses, pivot, lr_rotation, lr_translation, lr_decay, tol, **static):
    one = lambda p: _register_one(volume, camera, target, mask, p, pivot, lr_rotation, lr_translation, lr_decay, tol, **static)
    return jax.vmap(one)(init_poses)


_register_jit = jax.jit(_register_batch, static_argnames=_STATIC)


def register(
    volume: Volume,
    camera: Camera,
    target_image,
    init_pose,
    *,
    similarity: Callable = ncc,
    method: str = "siddon",
    steps=100,
    scales=(1,),
    lr_rotation: float = 1e-2,
    lr_translation: float = 1.0,
    lr_decay: float = 0.05,
    optimizer: Callable = optax.adam,
    parameterization: str = "rotation_translation",
    pivot=None,
    mask=None,
    patience: int = 20,
    tol: float = 1e-6,
    render_kwargs: dict | None = None,
) -> RegistrationResult:
    """Find the camera pose whose DRR of ``volume`` best matches ``target_image``.

    Args:
      volume: scalar volume (I, J, K), e.g. mu in 1/mm.
      camera: the imager; its (H, W) is the target's shape.
      target_image: (H, W) image to match (any intensity scale the similarity tolerates).
      init_pose: (4, 4) world_from_camera, or (S, 4, 4) initial poses optimised together
        (multi-start); the start with the lowest final loss is returned.
      similarity: ``f(drr, target, mask) -> scalar``, higher is better (e.g. ``ncc``,
        ``functools.partial(multiscale_ncc, patch_sizes=(None, 9))``); the loss is its
        negative. It is a static argument: reuse one function object to avoid recompiling.
      method: ``"siddon"`` or ``"trilinear"`` rendering.
      steps: optimiser steps per pyramid level, an int (every level) or a tuple per level.
      scales: pyramid downsampling factors, coarsest first, e.g. ``(4, 2, 1)``; each must
        divide H and W.
      lr_rotation: learning rate of the rotation parameters (rad per step for Adam).
      lr_translation: learning rate of the translation parameters (mm per step for Adam).
      lr_decay: each level's learning rates follow a cosine decay to ``lr_decay`` times their
        initial value at the level's last step (1.0 keeps them constant).
      optimizer: ``learning_rate -> optax.GradientTransformation`` (default ``optax.adam``),
        built per level and parameter group; it receives an optax schedule.
      parameterization: ``"rotation_translation"`` or ``"se3"`` (module docstring).
      pivot: (3,) world mm centre of rotation; default ``volume.center``.
      mask: optional (H, W) weights in [0, 1] of the target's pixels (0 ignores a pixel).
      patience: a level stops after this many steps without an improvement larger than ``tol``.
      tol: the loss improvement that counts.
      render_kwargs: extra keyword arguments of ``fluorojax.render`` (e.g. ``n_samples``).

    Returns:
      ``RegistrationResult`` (pose, loss and per-step history of the winning start).
    """
    if not isinstance(volume, Volume) or volume.data.ndim != 3:
        raise TypeError(f"register: volume must be a scalar (I, J, K) Volume, got {type(volume).__name__} with data shape {getattr(volume, 'data', np.zeros(0)).shape}")
    if not isinstance(camera, CAMERA_TYPES):
        raise TypeError(f"register: camera must be a Camera or an OrthographicCamera, got {type(camera).__name__}")
    target = jnp.asarray(target_image, jnp.float32)
    if target.shape != camera.shape:
        raise ValueError(f"register: target_image must be (H, W) = {camera.shape} like the camera, got {target.shape}")
    mask = jnp.ones_like(target) if mask is None else jnp.asarray(mask, jnp.float32)
    if mask.shape != target.shape:
        raise ValueError(f"register: mask must be {target.shape} like the target, got {mask.shape}")
    init = jnp.asarray(init_pose, jnp.float32)
    if init.shape[-2:] != (4, 4) or init.ndim not in (2, 3):
        raise ValueError(f"register: init_pose must be (4, 4) or (S, 4, 4) world_from_camera, got shape {init.shape}")
    scales = tuple(int(s) for s in np.atleast_1d(scales))
    for s in scales:
        pyramid_camera(camera, s)
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

    batch = init if init.ndim == 3 else init[None]
    pose, loss, losses, poses, taken = _register_jit(
        volume,
        camera,
        target,
        mask,
        batch,
        pivot,
        jnp.float32(lr_rotation),
        jnp.float32(lr_translation),
        jnp.float32(lr_decay),
        jnp.float32(tol),
        similarity=similarity,
        method=method,
        render_kwargs=tuple(sorted((render_kwargs or {}).items())),
        scales=scales,
        steps=steps,
        optimizer=optimizer,
        parameterization=parameterization,
        patience=int(patience),
    )
    best_pose, best_loss, best_losses, best_poses, best_taken, start = _select(pose, loss, losses, poses, taken)
    level = jnp.asarray(np.repeat(np.arange(len(steps), dtype=np.int32), steps))
    return RegistrationResult(best_pose, best_loss, best_losses, best_poses, level, best_taken, start, loss, pose)
