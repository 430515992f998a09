"""The ``fluorojax`` command: ``render``, ``register``, ``generate``, ``preview`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Sequence

import jax
import numpy as np

from fluorojax import _validate
from fluorojax._cli_args import (
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from fluorojax._display import to_uint8, window
from fluorojax._files import check_writable, write_atomic
from fluorojax.cli_generate import add_generate_parser, add_preview_parser
from fluorojax.volume import rays_hit_volume

DEFAULT_SDD = 1020.0
DEFAULT_SOURCE_TO_ISOCENTER = 510.0
DEFAULT_DETECTOR_MM = 400.0
_IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".npy")


def _render_parser(sub):
    p = sub.add_parser(
        "render",
        help="render a DRR of a CT to an image file",
        description=(
            "Render a digitally reconstructed radiograph of a CT (NIfTI, Hounsfield units) seen by a "
            "C-arm. Without --kvp the image is the monochromatic line integral of mu (60 keV water); "
            "with --kvp it is the polychromatic -log image of a tube spectrum (air, soft tissue and "
            "bone by HU thresholds), optionally with Poisson noise for --photons per pixel."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("ct", nargs="?", help="CT volume (.nii/.nii.gz) in HU; default: the bundled example chest CT")
    p.add_argument("--labels", help="label map on the CT's grid (.nii/.nii.gz); checked against the CT's grid")
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--carm",
        nargs=2,
        type=finite_float,
        metavar=("LAO", "CRA"),
        default=(0.0, 0.0),
        help="C-arm angles in degrees: LAO (+) / RAO (-) about the patient's long axis, CRA (+) / CAU (-) tilt; 0 0 is AP",
    )
    view.add_argument("--pose", help="world_from_camera 4x4 pose (mm) as a .npy file or a JSON nested list")
    p.add_argument(
        "--isocenter",
        nargs=3,
        type=finite_float,
        metavar=("X", "Y", "Z"),
        help="isocentre in world mm; default: the CT's centre",
    )
    p.add_argument(
        "--sid",
        type=positive_float,
        default=DEFAULT_SOURCE_TO_ISOCENTER,
        help="source-to-isocentre distance, mm (with --carm)",
    )
    p.add_argument("--sdd", type=positive_float, default=DEFAULT_SDD, help="source-to-detector distance, mm")
    p.add_argument(
        "--size", nargs=2, type=positive_int, metavar=("H", "W"), default=(256, 256), help="image size in pixels"
    )
    p.add_argument(
        "--pixel-size", type=positive_float, help=f"pixel size in mm; default: {DEFAULT_DETECTOR_MM:g} mm / W"
    )
    p.add_argument(
        "--method",
        choices=("siddon", "trilinear"),
        default="siddon",
        help="exact voxel traversal or trilinear ray marching",
    )
    p.add_argument(
        "--kvp",
        type=positive_int,
        help="tube voltage for a polychromatic image (one of the shipped spectra, e.g. 60, 80, 90, 100, 120)",
    )
    p.add_argument("--photons", type=positive_float, help="photons per pixel for Poisson noise (needs --kvp)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed for the noise")
    p.add_argument(
        "--out",
        default="drr.png",
        help="output file: .png (8-bit, windowed), .tiff (float32), .npy (float32) or .dcm "
        "(DICOM X-ray with its geometry: SID, pixel spacing, positioner angles about the isocentre)",
    )
    p.set_defaults(func=_render)


def _register_parser(sub):
    p = sub.add_parser(
        "register",
        help="find the C-arm pose whose DRR of a CT matches an X-ray image",
        description=(
            "2D/3D registration: optimise the pose of a DRR of the CT (mu from HU) so that it matches the "
            "target image by normalised gradient fields, starting from a C-arm pose, with a coarse-to-fine "
            "pyramid. The target is a (H, W) image in .png, .tif/.tiff or .npy whose pixels follow the "
            "camera given by --sdd and --pixel-size (the DRR convention: row 0 at the top as seen from the "
            "source), or a DICOM X-ray (.dcm) whose tags give the camera and, without --carm, the initial "
            "pose about --isocenter; its intensity scale does not matter. Writes the pose as JSON and an overlay image."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", help="target X-ray image (.png, .tif/.tiff, .npy or DICOM .dcm)")
    p.add_argument("ct", nargs="?", help="CT volume (.nii/.nii.gz) in HU; default: the bundled example chest CT")
    p.add_argument(
        "--carm",
        nargs=2,
        type=finite_float,
        metavar=("LAO", "CRA"),
        help="initial C-arm angles in degrees (default 0 0, or a DICOM target's positioner angles)",
    )
    p.add_argument(
        "--isocenter",
        nargs=3,
        type=finite_float,
        metavar=("X", "Y", "Z"),
        help="initial isocentre in world mm; default: the CT's centre",
    )
    p.add_argument(
        "--sid",
        type=positive_float,
        default=DEFAULT_SOURCE_TO_ISOCENTER,
        help="initial source-to-isocentre distance, mm",
    )
    p.add_argument("--sdd", type=positive_float, default=DEFAULT_SDD, help="source-to-detector distance, mm")
    p.add_argument(
        "--pixel-size", type=positive_float, help=f"pixel size in mm; default: {DEFAULT_DETECTOR_MM:g} mm / W"
    )
    p.add_argument("--method", choices=("siddon", "trilinear"), default="siddon", help="renderer")
    p.add_argument(
        "--steps", type=positive_int, help="optimiser steps per pyramid level (default: fluorojax.register's, 60)"
    )
    p.add_argument(
        "--scales",
        nargs="+",
        type=positive_int,
        help="pyramid downsampling factors, coarsest first (default: those of 4, 2, 1 that divide the image size)",
    )
    p.add_argument(
        "--search",
        action="store_true",
        help="coarse global search of the start (rotations within +/-20 deg, "
        "in-plane shifts within +/-40 mm) before the gradient refinement",
    )
    p.add_argument(
        "--animate", metavar="GIF", help="also write an animated GIF of the DRR's edges over the target, step by step"
    )
    p.add_argument(
        "--out", default="pose.json", help="output JSON: the registered 4x4 world_from_camera pose and the loss history"
    )
    p.add_argument(
        "--overlay", default="overlay.png", help="output PNG: target in grey, DRR edges before (red) and after (green)"
    )
    p.set_defaults(func=_register)


def _read_image_file(path, ext):
    if ext == ".npy":
        return np.load(path)
    if ext in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("F"))


def _load_image(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such image: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _IMAGE_EXTENSIONS:
        raise ValueError(f"target image must be .png, .tif/.tiff or .npy, got {path!r}")
    try:
        image = _read_image_file(path, ext)
    except (
        OSError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
    ) as err:  # what PIL, tifffile and np.load raise for undecodable files
        raise ValueError(
            f"target image {path}: cannot read it as {ext[1:].upper()} ({type(err).__name__}: {err})"
        ) from None
    try:
        image = np.asarray(image, np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"target image {path}: not an array of numbers ({err})") from None
    if image.ndim != 2 or not np.all(np.isfinite(image)):
        raise ValueError(f"target image {path} must be a finite 2-D (H, W) array, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"target image {path} is empty ({image.shape[0]} x {image.shape[1]} pixels)")
    return image


def _check_fits(height, width, batch=1):
    _validate.fits_memory(f"a {height} x {width} image", batch, height, width)


def _check_view(volume, camera, pose, what):
    """ValueError when no ray of ``camera`` at ``pose`` crosses the volume's voxel grid."""
    sources, targets = camera.rays(pose)
    if not rays_hit_volume(volume, sources, targets).any():
        raise ValueError(
            f"{what}: no ray of the {camera.height} x {camera.width} camera crosses the CT; the view "
            f"looks away from the volume (check the angles, the isocentre or the pose)"
        )


def _register(args):
    import fluorojax as fj

    out = check_writable(args.out, "--out")
    overlay = check_writable(args.overlay, "--overlay")
    animation = check_writable(args.animate, "--animate") if args.animate else None
    dicom = args.target.lower().endswith(".dcm")
    target = None if dicom else _load_image(args.target)
    volume = fj.hu_to_mu(fj.load_volume(args.ct) if args.ct else fj.load_example())
    isocenter = np.asarray(args.isocenter if args.isocenter else volume.center, np.float32)
    xray = fj.io.load_xray(args.target, isocenter=isocenter) if dicom else None
    if xray is not None:
        target = xray.image
    height, width = target.shape
    for scale in args.scales or ():
        if height % scale or width % scale:
            raise ValueError(f"--scales {scale} must divide the target's size {height} x {width}")
    _check_fits(height, width, 3)
    camera = fj.Camera(height, width, args.pixel_size or DEFAULT_DETECTOR_MM / width, args.sdd)
    if xray is not None and xray.camera is not None:
        camera = xray.camera
    if args.carm is None and xray is not None and xray.pose is not None:
        init = xray.pose
    else:
        lao, cra = args.carm if args.carm is not None else (0.0, 0.0)
        init = fj.carm_pose(lao, cra, args.sid, isocenter)
    _check_view(volume, camera, init, "the initial pose")
    options = {"steps": args.steps, "scales": None if args.scales is None else tuple(args.scales)}
    result = fj.register(
        volume,
        camera,
        target,
        init,
        method=args.method,
        search=args.search,
        **{k: v for k, v in options.items() if v is not None},
    )
    before = np.asarray(fj.render(volume, camera, init, args.method))
    after = np.asarray(fj.render(volume, camera, result.pose, args.method))
    record = {
        "pose": np.asarray(result.pose).tolist(),
        "initial_pose": np.asarray(init).tolist(),
        "loss": float(result.loss),
        "losses": np.asarray(result.losses).tolist(),
        "target": os.path.abspath(args.target),
    }
    write_atomic(out, json.dumps(record, indent=1).encode("utf-8"))
    write_atomic(overlay, lambda f: _overlay(target, before, after).save(f, format="PNG"))
    if animation is not None:
        write_atomic(animation, lambda f: result.animate(f, volume, camera, target, method=args.method))
    print(
        f"wrote {args.out} (final loss {float(result.loss):.4f}, from {float(result.losses[0]):.4f}) and {args.overlay}"
    )


def _edges(image):
    gy, gx = np.gradient(image.astype(np.float64))
    magnitude = np.hypot(gx, gy)
    return magnitude > np.percentile(magnitude, 90)


def _overlay(target, before, after):
    from PIL import Image

    rgb = np.repeat(window(target)[..., None], 3, axis=-1) * 0.8
    rgb[_edges(before)] = (1.0, 0.2, 0.2)
    rgb[_edges(after)] = (0.2, 1.0, 0.2)
    return Image.fromarray(to_uint8(rgb))


def _load_pose(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such pose file: {path}")
    try:
        if path.endswith(".npy"):
            pose = np.load(path)
        else:
            with open(path, encoding="utf-8") as f:
                pose = json.load(f)
    except (ValueError, OSError) as err:  # JSONDecodeError, UnicodeDecodeError and np.load's errors are ValueErrors
        kind = "a .npy array" if path.endswith(".npy") else "JSON"
        raise ValueError(f"pose file {path}: not valid {kind} ({err})") from None
    pose = _validate.finite_array(f"pose in {path} (a 4x4 world_from_camera matrix)", _nested(pose, path), shape=(4, 4))
    return pose


def _nested(value, path):
    """A JSON nested list as an array, ValueError naming the file for ragged lists."""
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"pose in {path} must be a 4x4 nested list of numbers ({err})") from None


def _render(args):
    import fluorojax as fj
    from fluorojax import physics

    if args.photons is not None and args.kvp is None:
        raise ValueError("--photons needs --kvp: noise is simulated on the polychromatic intensity")
    if os.path.splitext(args.out)[1].lower() not in _IMAGE_EXTENSIONS + (".dcm",):
        raise ValueError(f"output must end in .png, .tif/.tiff, .npy or .dcm, got {args.out!r}")
    out = check_writable(args.out, "--out")
    height, width = args.size
    _check_fits(height, width)
    if args.kvp is not None:
        physics.spectrum(args.kvp)
    pose = _load_pose(args.pose) if args.pose else None
    volume = fj.load_volume(args.ct, labels=args.labels) if args.ct else fj.load_example()
    camera = fj.Camera(height, width, args.pixel_size or DEFAULT_DETECTOR_MM / width, args.sdd)
    isocenter = np.asarray(args.isocenter if args.isocenter else volume.center, np.float32)
    if pose is None:
        pose = fj.carm_pose(args.carm[0], args.carm[1], args.sid, isocenter)
    _check_view(volume, camera, pose, "--pose" if args.pose else "the C-arm view")
    if args.kvp is None:
        image = fj.render(fj.hu_to_mu(volume), camera, pose, args.method)
    else:
        spec = physics.spectrum(args.kvp)
        image = fj.render_polychromatic(volume, camera, pose, spec, method=args.method)
        if args.photons is not None:
            image = physics.detector_noise(jax.random.key(args.seed), image, args.photons)
        image = physics.neglog(image)
    _save(
        np.asarray(image, np.float32),
        out,
        camera,
        pose,
        isocenter=None if args.pose and not args.isocenter else isocenter,
    )
    print(f"wrote {args.out}: {height} x {width} DRR, values {image.min():.3f} to {image.max():.3f}")


def _save(image, path, camera=None, pose=None, isocenter=None):
    """Write ``image`` atomically; a .dcm also gets the camera and, about ``isocenter`` (None:
    without a pose), the pose."""
    ext = path.suffix.lower()
    if ext == ".dcm":
        from fluorojax.io import save_xray

        write_atomic(
            path,
            lambda f: save_xray(
                f,
                image,
                camera,
                None if isocenter is None else pose,
                isocenter=(0.0, 0.0, 0.0) if isocenter is None else isocenter,
            ),
        )
    elif ext == ".npy":
        write_atomic(path, lambda f: np.save(f, image))
    elif ext in (".tif", ".tiff"):
        import tifffile

        write_atomic(path, lambda f: tifffile.imwrite(f, image))
    else:
        from PIL import Image

        write_atomic(path, lambda f: Image.fromarray(to_uint8(window(image))).save(f, format="PNG"))


def _use_cpu_cores() -> None:
    """One JAX CPU device per core this process may use, so that the CPU Siddon splits its rays
    over the cores (``raycast.cpu_devices``), unless the user chose a count (``JAX_NUM_CPU_DEVICES``,
    or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``) or JAX already started in this
    process (``main`` called from Python: its devices stay as they are)."""
    chosen = jax.config.jax_num_cpu_devices  # type: ignore[attr-defined]  # a context-managed flag: read as an attribute
    if chosen != -1 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        jax.config.update("jax_num_cpu_devices", cores or 1)
    except RuntimeError:  # JAX's backend has started: the device count is fixed
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorojax", description="Differentiable X-ray simulation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    _render_parser(sub)
    _register_parser(sub)
    add_generate_parser(sub)
    add_preview_parser(sub)
    args = parser.parse_args(argv)
    _use_cpu_cores()
    try:
        args.func(args)
    # OSError: missing, unwritable or unreadable files; ImportError: an optional package, named with its extra
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"fluorojax {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
