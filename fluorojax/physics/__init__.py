"""X-ray physics: materials, spectra, polychromatic attenuation, detector noise and scatter.

Stages compose: CT in HU -> ``material_volume`` (densities segmented into materials) -> one render for every
material's areal density -> ``intensity`` (polychromatic Beer-Lambert) -> ``add_scatter`` ->
``detector_noise`` -> ``neglog``. ``fluorojax.render_polychromatic`` (in ``fluorojax.simulate``, the layer
that composes renderers and physics) runs the first three.
"""

from fluorojax.physics.attenuation import MM_PER_CM
from fluorojax.physics.attenuation import flat_field
from fluorojax.physics.attenuation import intensity
from fluorojax.physics.attenuation import log_transmission
from fluorojax.physics.attenuation import material_classes
from fluorojax.physics.attenuation import material_densities
from fluorojax.physics.attenuation import material_volume
from fluorojax.physics.attenuation import neglog
from fluorojax.physics.materials import DEFAULT_MATERIALS
from fluorojax.physics.materials import ENERGY_RANGE_KEV
from fluorojax.physics.materials import HU_THRESHOLDS
from fluorojax.physics.materials import Material
from fluorojax.physics.materials import as_material
from fluorojax.physics.materials import attenuation_table
from fluorojax.physics.materials import density_channels
from fluorojax.physics.materials import elements
from fluorojax.physics.materials import hu_to_density
from fluorojax.physics.materials import mass_attenuation
from fluorojax.physics.materials import material
from fluorojax.physics.materials import material_from_elements
from fluorojax.physics.materials import material_names
from fluorojax.physics.materials import segment_hu
from fluorojax.physics.materials import segment_labels
from fluorojax.physics.noise import crosstalk
from fluorojax.physics.noise import detector_noise
from fluorojax.physics.noise import electronic_noise
from fluorojax.physics.noise import gaussian_noise
from fluorojax.physics.noise import poisson_noise
from fluorojax.physics.scatter import add_scatter
from fluorojax.physics.scatter import gaussian_blur
from fluorojax.physics.scatter import scatter
from fluorojax.physics.spectra import available_kvps
from fluorojax.physics.spectra import custom_spectrum
from fluorojax.physics.spectra import filter_spectrum
from fluorojax.physics.spectra import mean_energy
from fluorojax.physics.spectra import monochromatic
from fluorojax.physics.spectra import spectrum
from fluorojax.physics.spectra import spectrum_info

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
