"""Generate the tables shipped in fluorojax/physics/data/ (run once; needs xraydb and spekpy).

    pip install xraydb spekpy
    python scripts/make_physics_tables.py

Writes:
  element_mass_attenuation.npz  mu/rho (cm^2/g) of the elements Z = 1..92, 1-500 keV, from the
                                Elam-Ravel-Sieber tables carried by xraydb (mu_elam, kind "total",
                                coherent scattering included), on a log grid of 40 points per
                                decade plus a point 0.01 % either side of every absorption edge.
  materials.csv                 the built-in materials: nominal density and elemental mass
                                fractions (NIST XrayMassCoef Table 2 / ICRU Report 44 for tissues).
  spectra.csv                   tungsten-anode tube spectra from spekpy (SpekPy 2.x default physics,
                                12 degree anode, 1 keV bins), filtered by aluminium as listed below,
                                as normalised photon fluence per bin.
Neither xraydb nor spekpy is needed at run time.
"""

from __future__ import annotations

import csv
import os

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "fluorojax", "physics", "data")

E_MIN_KEV, E_MAX_KEV, POINTS_PER_DECADE, EDGE_OFFSET = 1.0, 500.0, 40, 1e-4

# name, density g/cm^3, mass fractions, source
MATERIALS = [
    (
        "air",
        0.001205,
        {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827},
        "NIST Table 2: Air, Dry (near sea level)",
    ),
    ("water", 1.0, {"H": 0.111894, "O": 0.888106}, "NIST Table 2: Water, Liquid"),
    (
        "lung",
        0.26,
        {"H": 0.103, "C": 0.105, "N": 0.031, "O": 0.749, "Na": 0.002, "P": 0.002, "S": 0.003, "Cl": 0.003, "K": 0.002},
        "NIST Table 2: Lung Tissue (ICRU-44); density of inflated lung (tissue itself 1.05)",
    ),
    (
        "adipose",
        0.95,
        {"H": 0.114, "C": 0.598, "N": 0.007, "O": 0.278, "Na": 0.001, "S": 0.001, "Cl": 0.001},
        "NIST Table 2: Adipose Tissue (ICRU-44)",
    ),
    (
        "soft_tissue",
        1.06,
        {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003, "S": 0.003, "Cl": 0.002, "K": 0.003},
        "NIST Table 2: Tissue, Soft (ICRU-44)",
    ),
    (
        "muscle",
        1.05,
        {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.710, "Na": 0.001, "P": 0.002, "S": 0.003, "Cl": 0.001, "K": 0.004},
        "NIST Table 2: Muscle, Skeletal (ICRU-44)",
    ),
    (
        "blood",
        1.06,
        {
            "H": 0.102,
            "C": 0.110,
            "N": 0.033,
            "O": 0.745,
            "Na": 0.001,
            "P": 0.001,
            "S": 0.002,
            "Cl": 0.003,
            "K": 0.002,
            "Fe": 0.001,
        },
        "NIST Table 2: Blood, Whole (ICRU-44)",
    ),
    (
        "cortical_bone",
        1.92,
        {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103, "S": 0.003, "Ca": 0.225},
        "NIST Table 2: Bone, Cortical (ICRU-44)",
    ),
    ("polyethylene", 0.94, {"H": 0.143711, "C": 0.856289}, "NIST Table 2: Polyethylene"),
    (
        "pmma",
        1.19,
        {"H": 0.080538, "C": 0.599848, "O": 0.319614},
        "NIST Table 2: Polymethyl Methacrylate (Lucite, Perspex)",
    ),
    ("aluminium", 2.699, {"Al": 1.0}, "element; NIST Table 1 density"),
    ("titanium", 4.506, {"Ti": 1.0}, "element; density of alpha titanium"),
    ("iron", 7.874, {"Fe": 1.0}, "element; NIST Table 1 density"),
    (
        "stainless_steel",
        8.0,
        {"Fe": 0.6572, "Cr": 0.17, "Ni": 0.12, "Mo": 0.025, "Mn": 0.02, "Si": 0.0075, "C": 0.0003},
        "AISI 316L, mid-range of the specification, iron balance",
    ),
    ("copper", 8.96, {"Cu": 1.0}, "element; NIST Table 1 density"),
    ("lead", 11.35, {"Pb": 1.0}, "element; NIST Table 1 density"),
]

# kVp -> total aluminium filtration in mm. 60/90/120 kVp are the typical settings quoted in
# docs/xray-physics-facts.md; 80 and 100 kVp are interpolated linearly in kVp between them.
SPECTRA = [(60, 3.5), (80, 3.8), (90, 4.0), (100, 4.1), (120, 4.3)]
ANODE_ANGLE_DEG = 12.0


def element_tables():
    import xraydb

    base = np.geomspace(E_MIN_KEV, E_MAX_KEV, int(round(POINTS_PER_DECADE * np.log10(E_MAX_KEV / E_MIN_KEV))) + 1)
    symbols, energies, mus, offsets = [], [], [], [0]
    for z in range(1, 93):
        symbol = xraydb.atomic_symbol(z)
        edges = [e.energy / 1000.0 for e in xraydb.xray_edges(symbol).values()]
        edges = [e for e in edges if E_MIN_KEV * (1 + EDGE_OFFSET) < e < E_MAX_KEV * (1 - EDGE_OFFSET)]
        grid = np.concatenate([base] + [[e * (1 - EDGE_OFFSET), e * (1 + EDGE_OFFSET)] for e in edges])
        grid = np.unique(grid)
        mu = np.asarray(xraydb.mu_elam(symbol, grid * 1000.0), np.float64)
        symbols.append(symbol)
        energies.append(grid)
        mus.append(mu)
        offsets.append(offsets[-1] + grid.size)
    return {
        "symbols": np.array(symbols),
        "atomic_mass": np.array([xraydb.atomic_mass(s) for s in symbols], np.float64),
        "offsets": np.array(offsets, np.int64),
        "energy_keV": np.concatenate(energies).astype(np.float32),
        "mu_over_rho": np.concatenate(mus).astype(np.float32),
    }


def spectra_rows():
    import spekpy

    rows = []
    for kvp, al_mm in SPECTRA:
        spek = spekpy.Spek(kvp=kvp, th=ANODE_ANGLE_DEG, dk=1.0)
        spek.filter("Al", al_mm)
        energy, fluence = spek.get_spectrum()
        fluence = np.asarray(fluence, np.float64)
        keep = fluence > 1e-6 * fluence.max()
        fluence = fluence / fluence[keep].sum()
        hvl = spek.get_hvl1()
        for e, f in zip(energy[keep], fluence[keep]):
            rows.append((kvp, al_mm, f"{hvl:.3f}", f"{e:.1f}", f"{f:.6e}"))
        print(f"{kvp} kVp, {al_mm} mm Al: HVL {hvl:.2f} mm Al, mean energy {spek.get_emean():.1f} keV")
    return rows


def main():
    os.makedirs(DATA, exist_ok=True)
    tables = element_tables()
    np.savez_compressed(os.path.join(DATA, "element_mass_attenuation.npz"), **tables)
    with open(os.path.join(DATA, "materials.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "density_g_cm3", "mass_fractions", "source"])
        for name, density, fractions, source in MATERIALS:
            if abs(sum(fractions.values()) - 1.0) > 1e-6:
                raise ValueError(f"mass fractions of {name} sum to {sum(fractions.values())}, expected 1")
            writer.writerow([name, density, " ".join(f"{s}:{w}" for s, w in fractions.items()), source])
    with open(os.path.join(DATA, "spectra.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kvp", "filtration_mm_al", "hvl_mm_al", "energy_keV", "photon_fraction"])
        writer.writerows(spectra_rows())


if __name__ == "__main__":
    main()
