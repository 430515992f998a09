"""X-ray physics: materials, spectra, polychromatic attenuation, detector noise and scatter.

Stages compose: CT in HU -> ``material_volume`` (densities segmented into materials) -> one render for every
material's areal density -> ``intensity`` (polychromatic Beer-Lambert) -> ``add_scatter`` ->
``detector_noise`` -> ``neglog``. ``fluorojax.render_polychromatic`` (in ``fluorojax.simulate``, the layer
that composes renderers and physics) runs the first three.
"""

from fluorojax.physics.attenuation import (
    MM_PER_CM,
    flat_field,
    intensity,
    log_transmission,
    material_classes,
    material_densities,
    material_volume,
    neglog,
)
from fluorojax.physics.materials import (
    DEFAULT_MATERIALS,
    ENERGY_RANGE_KEV,
    HU_THRESHOLDS,
    Material,
    as_material,
    attenuation_table,
    density_channels,
    elements,
    hu_to_density,
    mass_attenuation,
    material,
    material_from_elements,
    material_names,
    segment_hu,
    segment_labels,
)
from fluorojax.physics.noise import crosstalk, detector_noise, electronic_noise, gaussian_noise, poisson_noise
from fluorojax.physics.scatter import add_scatter, gaussian_blur, scatter
from fluorojax.physics.spectra import (
    available_kvps,
    custom_spectrum,
    filter_spectrum,
    mean_energy,
    monochromatic,
    spectrum,
    spectrum_info,
)

__all__ = (
    "DEFAULT_MATERIALS",
    "ENERGY_RANGE_KEV",
    "HU_THRESHOLDS",
    "MM_PER_CM",
    "Material",
    "add_scatter",
    "as_material",
    "attenuation_table",
    "available_kvps",
    "crosstalk",
    "custom_spectrum",
    "density_channels",
    "detector_noise",
    "electronic_noise",
    "elements",
    "filter_spectrum",
    "flat_field",
    "gaussian_blur",
    "gaussian_noise",
    "hu_to_density",
    "intensity",
    "log_transmission",
    "mass_attenuation",
    "material",
    "material_classes",
    "material_densities",
    "material_from_elements",
    "material_names",
    "material_volume",
    "mean_energy",
    "monochromatic",
    "neglog",
    "poisson_noise",
    "scatter",
    "segment_hu",
    "segment_labels",
    "spectrum",
    "spectrum_info",
)
