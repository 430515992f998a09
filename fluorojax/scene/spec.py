"""The serialisable scene specification: what a generator samples and renders, as plain data.

A ``SceneSpec`` holds the ranges and choices that devices, views, tools and rendering are drawn
from. It round-trips through plain dicts (``to_dict`` / ``SceneSpec.from_dict``) and through
JSON or YAML files (``load_spec`` / ``save_spec``). Files are data only: YAML is read with
``yaml.safe_load`` (a ``!!python/...`` tag is refused) and JSON with ``json.load``; nothing is
executed or unpickled. Unknown keys are refused, so a typo does not pass silently.

Together with a seed, a spec fixes every image: image ``index`` of case ``case`` is drawn from
the key ``fold_in(fold_in(key(seed), case_id(case)), index)``, so any image can be regenerated
from the spec, the seed, the case name and its index (``fluorojax.scene.generate``).

Units: mm, degrees only in names ending ``_deg``, kVp, photons per pixel.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fluorojax import _validate
from fluorojax._files import StrPath, write_atomic
from fluorojax.physics import material_names

ANNOTATION_KINDS = ("travel", "binary", "hits")
RENDER_MODES = ("poly", "mono")
TOOL_KINDS = ("k_wire", "cortical_screw", "cannulated_screw")


def _range(name, value, *, low=0.0):
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a [min, max] pair, got {value!r}")
    a, b = (_validate.number(f"{name} {end}", v) for end, v in zip(("min", "max"), value))
    if not low <= a <= b:
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got {value!r}")
    return (a, b)


def _choices(name, value, check):
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"{name} must be a non-empty list, got {value!r}")
    return tuple(check(v) for v in value)


def _name_check(where):
    def check(name):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} entries must be non-empty names, got {name!r}")
        return name

    return check


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


@dataclasses.dataclass(frozen=True)
class DeviceRanges:
    """Ranges of the imaging device, drawn per image (``fluorojax.scene.devices``).

    Defaults are the device ranges of the FluoroSeg generator (Killeen et al., FluoroSAM, 2024):
    detector width uniform 300-400 mm, source-to-detector distance uniform 900-1200 mm, point of
    interest (isocentre) at 0.65-0.75 of that distance from the source; the shipped tube spectra;
    1e3-1e5 photons per pixel, the range typical of fluoroscopy.

    Attributes:
      sdd_mm: [min, max] source-to-detector distance, mm (uniform).
      detector_mm: [min, max] detector width, mm (uniform); the pixel size is width / W
        (square pixels, so the detector height is H x pixel size).
      image_sizes: list of [H, W] image sizes in pixels, one drawn uniformly per image.
      isocenter_fraction: [min, max] source-to-isocentre distance as a fraction of sdd (uniform).
      kvps: tube voltages, one drawn uniformly per image (``fluorojax.physics.available_kvps``).
      photons: [min, max] open-beam photons per pixel (log-uniform), or None for no noise.
      spectrum_bins: energy bins of each polychromatic spectrum (equal for every kVp, so a batch
        of images with different kVp shares one shape).
    """

    sdd_mm: tuple = (900.0, 1200.0)
    detector_mm: tuple = (300.0, 400.0)
    image_sizes: tuple = ((256, 256),)
    isocenter_fraction: tuple = (0.65, 0.75)
    kvps: tuple = (60, 80, 90, 100, 120)
    photons: tuple | None = (1e3, 1e5)
    spectrum_bins: int = 16

    def __post_init__(self) -> None:
        _set(self, "sdd_mm", _range("device.sdd_mm", self.sdd_mm, low=1e-6))
        _set(self, "detector_mm", _range("device.detector_mm", self.detector_mm, low=1e-6))
        _set(
            self,
            "image_sizes",
            _choices(
                "device.image_sizes", self.image_sizes, lambda s: _validate.size("device.image_sizes entry [H, W]", s)
            ),
        )
        fraction = _range("device.isocenter_fraction", self.isocenter_fraction, low=1e-6)
        if fraction[1] >= 1.0:
            raise ValueError(
                f"device.isocenter_fraction must stay below 1 (the isocentre lies before the detector), got {fraction!r}"
            )
        _set(self, "isocenter_fraction", fraction)
        _set(self, "kvps", _choices("device.kvps", self.kvps, lambda k: _validate.positive_int("device.kvps entry", k)))
        if self.photons is not None:
            _set(self, "photons", _range("device.photons", self.photons, low=1e-6))
        _set(self, "spectrum_bins", _validate.positive_int("device.spectrum_bins", self.spectrum_bins))


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How views are drawn (``fluorojax.scene.views``).

    Attributes:
      near_standard_fraction: share of images that are near-standard views (the rest random).
      near_deg: near-standard views lie uniformly on the sphere cap of this half-angle around
        their standard view's direction (2 degrees: the view still counts as that view).
      random_deg: random views lie uniformly on the cap of this half-angle around ``random_around``.
      random_around: names of the standard views the random cones are centred on (one drawn per
        image); those absent from a scene are ignored.
      roll_deg: the image's up vector is the patient's superior axis turned by a uniform angle in
        [-roll_deg, roll_deg] about the principal ray.
      standard_views: names of the standard views to use, or None for every one the anatomy
        offers (see ``views.standard_views``).
      targets: structure names the view may be centred on, or None for every structure present.
      min_target_voxels: structures with fewer voxels are not used as targets.
    """

    near_standard_fraction: float = 0.5
    near_deg: float = 2.0
    random_deg: float = 75.0
    random_around: tuple = ("ap",)
    roll_deg: float = 10.0
    standard_views: tuple | None = None
    targets: tuple | None = None
    min_target_voxels: int = 50

    def __post_init__(self) -> None:
        _set(
            self,
            "near_standard_fraction",
            _validate.probability("views.near_standard_fraction", self.near_standard_fraction),
        )
        for name in ("near_deg", "random_deg", "roll_deg"):
            _set(
                self,
                name,
                _validate.number(f"views.{name}", getattr(self, name), low=0.0, high=180.0, unit="an angle in degrees"),
            )
        for name in ("random_around", "standard_views", "targets"):
            if name == "random_around" or getattr(self, name) is not None:
                _set(self, name, _choices(f"views.{name}", getattr(self, name), _name_check(f"views.{name}")))
        _set(self, "min_target_voxels", _validate.positive_int("views.min_target_voxels", self.min_target_voxels))


@dataclasses.dataclass(frozen=True)
class ToolConfig:
    """How tools are placed (``fluorojax.scene.placement``); tools are drawn once per scene.

    Attributes:
      probability: chance that a scene has tools at all.
      max_count: a scene with tools has 1..max_count of them (uniform).
      kinds: tool kinds to draw from (``TOOL_KINDS``).
      materials: tool materials (``fluorojax.physics.material_names``), drawn uniformly.
      kwire_lengths_mm, screw_lengths_mm: lengths drawn from; a short list keeps the number of
        distinct mesh shapes (and so of compilations) small.
      replace_tissue: the tool displaces the tissue it occupies (the CT's integral along the
        tool's hit intervals is removed).
      max_hits: surface crossings kept per pixel and tool (even; hits annotations hold
        max_hits / 2 entry / exit layers).
    """

    probability: float = 0.5
    max_count: int = 3
    kinds: tuple = TOOL_KINDS
    materials: tuple = ("stainless_steel", "titanium")
    kwire_lengths_mm: tuple = (100.0, 150.0)
    screw_lengths_mm: tuple = (30.0, 40.0, 50.0)
    replace_tissue: bool = True
    max_hits: int = 4

    def __post_init__(self) -> None:
        _set(self, "probability", _validate.probability("tools.probability", self.probability))
        _set(self, "max_count", _validate.positive_int("tools.max_count", self.max_count))
        _set(
            self,
            "kinds",
            _choices("tools.kinds", self.kinds, lambda k: _validate.choice("tools.kinds entry", k, TOOL_KINDS)),
        )
        _set(
            self,
            "materials",
            _choices(
                "tools.materials",
                self.materials,
                lambda m: _validate.choice("tools.materials entry", m, material_names()),
            ),
        )
        for name in ("kwire_lengths_mm", "screw_lengths_mm"):
            _set(
                self,
                name,
                _choices(
                    f"tools.{name}",
                    getattr(self, name),
                    lambda v, n=name: _validate.positive_number(f"tools.{n} entry", v, unit="mm"),
                ),
            )
        _set(self, "replace_tissue", _validate.boolean("tools.replace_tissue", self.replace_tissue))
        _set(self, "max_hits", _validate.positive_int("tools.max_hits", self.max_hits))
        if self.max_hits % 2:
            raise ValueError(f"tools.max_hits must be even (entry / exit pairs), got {self.max_hits}")


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """How images and masks are rendered (``fluorojax.simulate.scene``).

    Attributes:
      mode: "poly" (the drawn kVp's spectrum) or "mono" (one energy, ``mono_energy_kev``).
      mono_energy_kev: the energy of monochromatic images, keV.
      annotation: segmentation stored per structure: "travel" (path length), "binary" or "hits"
        (entry / exit depths; one layer for label-map structures, max_hits / 2 for tools).
      structures: structure names to annotate, or None for every labelled structure.
      views_per_scene: images that share one scene (one tool placement) and are rendered in one
        batched call; also the batch size.
      val_fraction: share of cases (the last in name order) written to val.txt.
    """

    mode: str = "poly"
    mono_energy_kev: float = 60.0
    annotation: str = "travel"
    structures: tuple | None = None
    views_per_scene: int = 8
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        _validate.choice("render.mode", self.mode, RENDER_MODES)
        _set(
            self,
            "mono_energy_kev",
            _validate.positive_number("render.mono_energy_kev", self.mono_energy_kev, unit="keV"),
        )
        _validate.choice("render.annotation", self.annotation, ANNOTATION_KINDS)
        if self.structures is not None:
            _set(self, "structures", _choices("render.structures", self.structures, _name_check("render.structures")))
        _set(self, "views_per_scene", _validate.positive_int("render.views_per_scene", self.views_per_scene))
        _set(
            self,
            "val_fraction",
            _validate.number("render.val_fraction", self.val_fraction, low=0.0, high=1.0, high_open=True),
        )


_SECTIONS = {"device": DeviceRanges, "views": ViewConfig, "tools": ToolConfig, "render": RenderConfig}


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """Everything a generator draws from: device ranges, views, tools, rendering, image count.

    Attributes:
      images_per_ct: images generated for each CT.
      seed: default random seed (a generator call may override it).
      device, views, tools, render: the sections (see their classes).
    """

    images_per_ct: int = 100
    seed: int = 0
    device: DeviceRanges = dataclasses.field(default_factory=DeviceRanges)
    views: ViewConfig = dataclasses.field(default_factory=ViewConfig)
    tools: ToolConfig = dataclasses.field(default_factory=ToolConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        _set(self, "images_per_ct", _validate.positive_int("images_per_ct", self.images_per_ct))
        _set(self, "seed", _validate.integer("seed", self.seed, minimum=0))
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"SceneSpec.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")

    def to_dict(self) -> dict:
        """Plain JSON / YAML data (lists for tuples)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneSpec:
        """A spec from plain data; missing keys take their defaults, unknown keys raise ValueError."""
        _check_keys("scene spec", data, cls)
        kwargs = {}
        for key, value in data.items():
            if key in _SECTIONS:
                _check_keys(f"scene spec section {key!r}", value, _SECTIONS[key])
                kwargs[key] = _SECTIONS[key](**{k: _tuples(v) for k, v in value.items()})
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> SceneSpec:
        """A copy with top-level fields replaced; a section may be given as a dict of its changes."""
        for name in _SECTIONS:
            if isinstance(changes.get(name), Mapping):
                changes[name] = dataclasses.replace(
                    getattr(self, name), **{k: _tuples(v) for k, v in changes[name].items()}
                )
        return dataclasses.replace(self, **changes)


def _check_keys(where: str, data, cls) -> None:
    """ValueError unless ``data`` is a mapping whose keys are fields of dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in {where}; expected some of {sorted(names)}")


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def load_spec(path: StrPath) -> SceneSpec:
    """Read a ``SceneSpec`` from a .json, .yaml or .yml file (data only: YAML safe loading).

    Raises FileNotFoundError for a missing file and ValueError for anything that is not plain
    data (e.g. a ``!!python/object`` tag) or not a valid spec.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no scene spec file at {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"scene spec must be a .json, .yaml or .yml file, got {str(path)!r}")
    text = path.read_text("utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.constructor.ConstructorError as err:
            raise ValueError(
                f"{path}: not plain YAML data (only safe YAML is read; tags such as !!python are refused): {err}"
            ) from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: YAML syntax error: {err}") from None
    return SceneSpec.from_dict({} if data is None else data)


def save_spec(spec: SceneSpec, path: StrPath) -> Path:
    """Write ``spec`` as JSON (.json) or YAML (.yaml / .yml); returns the path."""
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n"
    elif suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(spec.to_dict(), sort_keys=True)
    else:
        raise ValueError(f"scene spec must be written as .json, .yaml or .yml, got {str(path)!r}")
    return write_atomic(path, text.encode("utf-8"))
