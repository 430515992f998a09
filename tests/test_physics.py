"""Tests of fluorojax.physics against independent truths: NIST literals, numpy float64 sums
over the same tables, closed forms (Beer-Lambert), moments of the noise, finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluorojax as fj
from fluorojax import physics as P

# NIST X-ray mass attenuation coefficients (Hubbell & Seltzer, NISTIR 5632, Tables 3 and 4),
# mu/rho in cm^2/g at 30, 60 and 100 keV; literals typed from the NIST tables.
NIST_MU_RHO = {
    "water": (0.3756, 0.2059, 0.1707),  # Water, Liquid
    "cortical_bone": (1.331, 0.3148, 0.1855),  # Bone, Cortical (ICRU-44)
    "titanium": (4.972, 0.7661, 0.2721),  # Z = 22
    "aluminium": (1.128, 0.2778, 0.1704),  # Z = 13
    "iron": (8.176, 1.205, 0.3717),  # Z = 26
    "lead": (30.32, 5.021, 5.549),  # Z = 82
}


def np_mu(material, energy):
    """numpy float64 log-log interpolation of a material's table (the reference)."""
    m = P.as_material(material)
    return np.exp(np.interp(np.log(energy), np.log(m.energy_keV), np.log(m.mu_over_rho)))


def np_transmission(areal, materials, spec, detector="energy"):
    """numpy float64 polychromatic transmission I/I0 for areal densities (..., M) g/cm^2."""
    e = np.asarray(spec[0], np.float64)
    w = np.asarray(spec[1], np.float64) * (e if detector == "energy" else 1.0)
    mu = np.stack([np_mu(m, e) for m in materials])  # (M, E)
    return np.exp(-np.asarray(areal, np.float64) @ mu) @ w / w.sum()


# ---------------------------------------------------------------- materials


@pytest.mark.parametrize("name", sorted(NIST_MU_RHO))
def test_mass_attenuation_matches_nist_within_one_percent(name):
    got = np.asarray(P.mass_attenuation(name, jnp.array([30.0, 60.0, 100.0])))
    np.testing.assert_allclose(got, NIST_MU_RHO[name], rtol=0.01)


def test_every_issue_material_is_built_in_and_physical():
    required = {
        "air",
        "water",
        "lung",
        "adipose",
        "soft_tissue",
        "muscle",
        "blood",
        "cortical_bone",
        "aluminium",
        "titanium",
        "iron",
        "stainless_steel",
        "copper",
        "lead",
        "polyethylene",
        "pmma",
    }
    assert required <= set(P.material_names())
    names = sorted(required)
    table = np.asarray(jax.jit(lambda e: P.attenuation_table(names, e))(jnp.geomspace(10.0, 150.0, 40)))
    assert table.shape == (len(names), 40) and np.all(np.isfinite(table)) and np.all(table > 0)
    # Away from edges mu/rho falls with energy; tissues sit within 10 % of water at 60 keV.
    water = float(P.mass_attenuation("water", 60.0))
    for name in ("soft_tissue", "muscle", "blood", "lung", "adipose"):
        assert abs(float(P.mass_attenuation(name, 60.0)) / water - 1) < 0.1, name


def test_lead_k_edge_jump():
    below, above = np.asarray(P.mass_attenuation("lead", jnp.array([87.9, 88.1])))
    assert 1.85 < below < 1.95 and 7.5 < above < 7.8  # NIST: 1.910 and 7.683 at the 88.0045 keV edge


def test_mass_attenuation_is_loglog_interpolation_of_table():
    e = np.random.default_rng(0).uniform(10.0, 150.0, 200)
    for name in ("water", "cortical_bone", "lead", "stainless_steel"):
        np.testing.assert_allclose(P.mass_attenuation(name, jnp.asarray(e)), np_mu(name, e), rtol=2e-5)


def test_mixture_rule_and_user_materials():
    e = np.array([20.0, 45.0, 90.0, 140.0])
    water = P.material_from_elements("my_water", {"H": 0.111894, 8: 0.888106}, 1.0)
    np.testing.assert_allclose(P.mass_attenuation(water, e), P.mass_attenuation("water", e), rtol=1e-6)
    # mu/rho of a mixture is the mass-weighted sum of its elements' (checked on element materials).
    iodine_water = P.material_from_elements("contrast", {"I": 0.05, "H": 0.95 * 0.111894, "O": 0.95 * 0.888106}, 1.1)
    i_el = P.material_from_elements("iodine", {"I": 1.0}, 4.93)
    grid = iodine_water.energy_keV[(iodine_water.energy_keV > 15) & (iodine_water.energy_keV < 150)]
    expected = 0.05 * np_mu(i_el, grid) + 0.95 * np_mu("water", grid)  # exact on the table's grid
    np.testing.assert_allclose(P.mass_attenuation(iodine_water, grid), expected, rtol=2e-5)
    expected = 0.05 * np_mu(i_el, e) + 0.95 * np_mu("water", e)  # between grid points: interpolation
    np.testing.assert_allclose(P.mass_attenuation(iodine_water, e), expected, rtol=1e-3)
    assert iodine_water.density == 1.1
    # The iodine K edge at 33.17 keV appears in the mixture.
    below, above = np.asarray(P.mass_attenuation(iodine_water, jnp.array([33.0, 33.4])))
    assert above > 3 * below


def test_material_errors():
    with pytest.raises(ValueError, match="unknown material 'unobtainium'"):
        P.material("unobtainium")
    with pytest.raises(ValueError, match="sum to 0.5"):
        P.material_from_elements("half", {"H": 0.5}, 1.0)
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        P.material_from_elements("bad", {"Xx": 1.0}, 1.0)
    with pytest.raises(ValueError, match="density"):
        P.material_from_elements("bad", {"H": 1.0}, -1.0)
    with pytest.raises(ValueError, match=r"energies must lie in \[1.0, 500.0\] keV"):
        P.mass_attenuation("water", jnp.array([0.5, 60.0]))
    with pytest.raises(TypeError, match="material name or a Material"):
        P.mass_attenuation(3, 60.0)


def test_hu_to_density_piecewise_linear():
    hu = np.array([-1000.0, -500.0, 0.0, 500.0, 1000.0, 3000.0])
    expected = np.maximum(0, np.minimum(0.001029 * hu + 1.030, 0.0005886 * hu + 1.03))
    np.testing.assert_allclose(P.hu_to_density(hu), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(P.hu_to_density(np.array([-1000.0, 0.0, 1000.0])), [0.001, 1.03, 1.6186], atol=1e-6)
    np.testing.assert_allclose(
        P.hu_to_density(np.array([-950.0, -850.0]), air_below_hu=-900.0), [0.001, 0.001029 * -850 + 1.03], atol=1e-6
    )


def test_segmentation_by_thresholds_and_labels():
    hu = jnp.array([-1000.0, -800.0, -799.0, 0.0, 350.0, 351.0, 2000.0])
    np.testing.assert_array_equal(P.segment_hu(hu), [0, 0, 1, 1, 1, 2, 2])
    labels = jnp.array([0, 5, 7, 5, 9])
    np.testing.assert_array_equal(P.segment_labels(labels, {0: 0, 5: 2, 7: 1, 9: 1}), [0, 2, 1, 2, 1])
    np.testing.assert_array_equal(P.segment_labels(labels, {5: 2}, default=jnp.array([0, 0, 1, 0, 1])), [0, 2, 1, 2, 1])
    with pytest.raises(ValueError, match=r"labels \[7, 9\] have no material class"):
        P.segment_labels(labels, {0: 0, 5: 2})
    with pytest.raises(ValueError, match="increasing"):
        P.segment_hu(hu, (350.0, -800.0))


def test_material_densities_channels():
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1000, 1500, (4, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 3, (4, 5, 6))
    ch = np.asarray(P.material_densities(hu))
    assert ch.shape == (4, 5, 6, 3)
    rho = np.maximum(0, np.minimum(0.001029 * hu + 1.030, 0.0005886 * hu + 1.03))
    cls = np.digitize(hu, [-800, 350], right=True)
    expected = np.where(np.arange(3) == cls[..., None], rho[..., None], 0.0)
    np.testing.assert_allclose(ch, expected, rtol=1e-6, atol=1e-7)
    # Label 2 forced to bone (class 2), others by threshold.
    ch = np.asarray(P.material_densities(hu, labels, label_classes={2: 2}))
    cls = np.where(labels == 2, 2, cls)
    np.testing.assert_allclose(ch, np.where(np.arange(3) == cls[..., None], rho[..., None], 0.0), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="needs a label map"):
        P.material_densities(hu, None, label_classes={2: 2})
    with pytest.raises(ValueError, match="outside the 3 material classes"):
        P.material_densities(hu, labels, label_classes={2: 3})


# ---------------------------------------------------------------- spectra


def test_shipped_spectra():
    assert P.available_kvps() == (60, 80, 90, 100, 120)
    means = []
    for kvp in P.available_kvps():
        e, w = P.spectrum(kvp)
        assert e.shape == w.shape and e.ndim == 1
        np.testing.assert_allclose(float(jnp.sum(w)), 1.0, rtol=1e-5)
        assert float(e.max()) < kvp and float(e.min()) > 5.0 and np.all(np.asarray(w) >= 0)
        means.append(float(P.mean_energy((e, w))))
        assert 0.35 * kvp < means[-1] < 0.65 * kvp
    assert np.all(np.diff(means) > 0)
    assert P.spectrum_info(90)["filtration_mm_al"] == 4.0
    with pytest.raises(ValueError, match="no shipped spectrum for 75 kVp"):
        P.spectrum(75)


def test_spectrum_rebinning_keeps_fluence_and_mean():
    full = P.spectrum(120)
    e, w = P.spectrum(120, n_bins=10)
    assert e.shape == (10,)
    np.testing.assert_allclose(float(P.mean_energy((e, w))), float(P.mean_energy(full)), rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(w)), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="n_bins"):
        P.spectrum(120, n_bins=0)


def test_monochromatic_custom_and_filter():
    e, w = P.monochromatic(60.0)
    np.testing.assert_array_equal(e, [60.0])
    np.testing.assert_array_equal(w, [1.0])
    e, w = P.custom_spectrum([40.0, 80.0], [1.0, 3.0])
    np.testing.assert_allclose(w, [0.25, 0.75])
    # A 0.2 mm copper filter: numpy reference of the transmitted spectrum.
    spec = P.spectrum(90)
    fe, fw = P.filter_spectrum(spec, "copper", 0.2)
    ref = np.asarray(spec[1], np.float64) * np.exp(-np_mu("copper", np.asarray(spec[0])) * 8.96 * 0.02)
    np.testing.assert_allclose(fw, ref / ref.sum(), rtol=1e-4, atol=1e-9)
    assert float(P.mean_energy((fe, fw))) > float(P.mean_energy(spec)) + 2.0
    with pytest.raises(ValueError, match="weights must be >= 0"):
        P.custom_spectrum([40.0, 80.0], [1.0, -1.0])
    with pytest.raises(ValueError, match=r"\(E,\) energies and \(E,\) weights"):
        P.custom_spectrum([40.0, 80.0], [1.0])


# ---------------------------------------------------------------- polychromatic attenuation


class PolychromaticTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_slabs_match_numpy(self):
        spec = P.spectrum(90)
        cm = np.array([0.0, 0.5, 2.0, 10.0, 30.0])
        for name, rho in (("water", 1.0), ("aluminium", 2.699)):
            areal = (cm * rho)[:, None]
            for detector in ("energy", "counting"):
                f = self.variant(
                    lambda a, name=name, detector=detector: P.intensity(
                        a, (name,), spec, detector=detector, normalize=True
                    )
                )
                np.testing.assert_allclose(
                    f(jnp.asarray(areal)), np_transmission(areal, (name,), spec, detector), rtol=2e-5, atol=1e-30
                )

    @chex.variants(with_jit=True, without_jit=True)
    def test_monochromatic_is_beer_lambert(self):
        mats = ("water", "cortical_bone", "titanium")
        areal = jnp.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [5.0, 2.0, 0.5], [20.0, 3.0, 1.0]])
        for energy in (30.0, 60.0, 100.0):
            mu = np.asarray(P.attenuation_table(mats, jnp.array([energy])), np.float64)[:, 0]
            beer = self.variant(lambda a, energy=energy: P.intensity(a, mats, P.monochromatic(energy), normalize=True))
            got = beer(areal)
            np.testing.assert_allclose(got, np.exp(-np.asarray(areal, np.float64) @ mu), rtol=2e-6, atol=1e-30)

    def test_raw_intensity_upper_bound_and_neglog(self):
        spec = P.spectrum(60)
        areal = jnp.array([[0.0], [1.0], [5.0]])
        raw = P.intensity(areal, ("water",), spec)
        i0 = float(np.sum(np.asarray(spec[0], np.float64) * np.asarray(spec[1])))
        np.testing.assert_allclose(float(P.flat_field(spec)), i0, rtol=1e-6)
        np.testing.assert_allclose(raw, i0 * np_transmission(np.asarray(areal), ("water",), spec), rtol=2e-5)
        capped = P.intensity(areal, ("water",), spec, upper_bound=20.0)
        np.testing.assert_allclose(capped, np.minimum(raw, 20.0))
        np.testing.assert_allclose(
            P.neglog(raw, i0), -P.log_transmission(areal, ("water",), spec), rtol=1e-5, atol=1e-6
        )
        assert float(P.neglog(0.0)) == pytest.approx(-np.log(1e-12))

    def test_beam_hardening(self):
        spec = P.spectrum(120)
        cm = np.linspace(1.0, 40.0, 40)
        mu_eff = -np.asarray(P.log_transmission(jnp.asarray(cm)[:, None], ("water",), spec)) / cm
        assert np.all(np.diff(mu_eff) < 0)
        e = np.asarray(spec[0])
        assert np_mu("water", e.max()) < mu_eff[-1] < mu_eff[0] < np_mu("water", e.min())

    def test_thick_metal_stays_finite(self):
        areal = jnp.array([[0.0, 200.0], [0.0, 1000.0]])  # 18 cm and 88 cm of lead
        mats = ("water", "lead")
        lt, g = jax.jit(jax.value_and_grad(lambda a: jnp.sum(P.log_transmission(a, mats, P.spectrum(120)))))(areal)
        assert np.isfinite(float(lt)) and np.all(np.isfinite(np.asarray(g)))
        # Far beyond float32's exp range the log is dominated by the hardest energy bin.
        e, w = P.spectrum(120)
        mu_hi = np_mu("lead", np.asarray(e))
        k = np.argmin(mu_hi)
        expected = np.log(w[k] * e[k] / np.sum(np.asarray(w) * np.asarray(e))) - 1000.0 * mu_hi[k]
        np.testing.assert_allclose(float(P.log_transmission(areal[1:], mats, (e, w))[0]), expected, rtol=1e-3)

    def test_gradients_match_finite_differences(self):
        mats = ("soft_tissue", "cortical_bone")
        spec = P.spectrum(80, n_bins=12)

        def f(a):
            return jnp.sum(P.log_transmission(a, mats, spec) ** 2)

        def f64(a):
            return float(np.sum(np.log(np_transmission(a, mats, spec)) ** 2))

        a0 = np.array([[3.0, 0.5], [10.0, 2.0]])
        g = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(a0, jnp.float32)))
        fd = np.zeros_like(a0)
        h = 1e-4
        for idx in np.ndindex(a0.shape):
            d = np.zeros_like(a0)
            d[idx] = h
            fd[idx] = (f64(a0 + d) - f64(a0 - d)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-3)

        # Gradient with respect to the spectrum weights (through custom_spectrum's normalisation).
        e = jnp.asarray(spec[0])

        def fw(w):
            return jnp.sum(P.log_transmission(jnp.asarray(a0, jnp.float32), mats, P.custom_spectrum(e, w)))

        w0 = np.asarray(spec[1], np.float64)
        gw = np.asarray(jax.jit(jax.grad(fw))(jnp.asarray(w0, jnp.float32)))
        for i in (2, 6):
            d = np.zeros_like(w0)
            d[i] = 1e-4
            fd_i = (
                np.sum(np.log(np_transmission(a0, mats, (e, w0 + d))))
                - np.sum(np.log(np_transmission(a0, mats, (e, w0 - d))))
            ) / 2e-4
            np.testing.assert_allclose(gw[i], fd_i, rtol=1e-3)

    def test_vmap_equals_loop(self):
        areal = jnp.asarray(np.random.default_rng(2).uniform(0, 5, (4, 6, 3)), jnp.float32)
        spec = P.spectrum(100, n_bins=16)
        f = jax.jit(lambda a: P.intensity(a, P.DEFAULT_MATERIALS, spec, normalize=True))
        np.testing.assert_allclose(jax.vmap(f)(areal), np.stack([f(a) for a in areal]), rtol=1e-6)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="must hold the 2 materials"):
            P.intensity(jnp.ones((4, 3)), ("water", "lead"), P.spectrum(60))
        with pytest.raises(ValueError, match="detector must be one of"):
            P.intensity(jnp.ones((4, 1)), ("water",), P.spectrum(60), detector="film")


# ---------------------------------------------------------------- noise and scatter


def test_poisson_noise_moments_and_keys():
    p, n0 = 0.3, 1000.0
    img = jnp.full((128, 128), p)
    key = jax.random.key(0)
    noisy = np.asarray(P.poisson_noise(key, img, n0), np.float64)
    counts = noisy * n0
    np.testing.assert_allclose(counts, np.round(counts), rtol=1e-6)  # integer photon counts
    se_mean = np.sqrt(p / n0 / img.size)
    assert abs(noisy.mean() - p) < 4 * se_mean
    assert abs(noisy.var() / (p / n0) - 1) < 0.05  # sd of the variance estimate ~ 1.1 %
    np.testing.assert_array_equal(P.poisson_noise(key, img, n0), noisy.astype(np.float32))
    assert not np.array_equal(np.asarray(P.poisson_noise(jax.random.key(1), img, n0)), noisy.astype(np.float32))
    with pytest.raises(ValueError, match="photons"):
        P.poisson_noise(key, img, 0.0)


def test_noise_under_jit_and_vmap_over_keys():
    keys = jax.random.split(jax.random.key(7), 3)
    p = jnp.linspace(0.0, 1.0, 48).reshape(6, 8)
    chain = lambda k: P.detector_noise(k, p, 500.0, crosstalk_fraction=0.05, electronic_std=1.0)  # noqa: E731
    batched = jax.jit(jax.vmap(chain))(keys)
    single = jax.jit(chain)
    np.testing.assert_allclose(batched, np.stack([single(k) for k in keys]), rtol=1e-6, atol=1e-7)
    assert not np.allclose(batched[0], batched[1])


def test_gaussian_noise_moments_and_gradient():
    p = jnp.full((128, 128), 0.2)
    key = jax.random.key(3)
    noisy = np.asarray(P.gaussian_noise(key, p, 500.0), np.float64)
    assert abs(noisy.mean() - 0.2) < 4 * np.sqrt(0.2 / 500 / p.size)
    assert abs(noisy.var() / (0.2 / 500) - 1) < 0.05
    np.testing.assert_array_equal(P.gaussian_noise(key, p, 500.0), noisy.astype(np.float32))
    # Reparameterised: d/dp of (p + sqrt(p / N0) z) = 1 + z / (2 sqrt(p N0)), z from the same key.
    x = jnp.array([0.05, 0.5, 0.0])
    z = np.asarray(jax.random.normal(key, (3,)), np.float64)
    g = np.asarray(jax.grad(lambda x: jnp.sum(P.gaussian_noise(key, x, 100.0)))(x))
    np.testing.assert_allclose(g[:2], 1 + z[:2] / (2 * np.sqrt(np.array([0.05, 0.5]) * 100.0)), rtol=1e-5)
    assert np.isfinite(g[2])


def test_crosstalk_and_detector_chain():
    flat = jnp.full((6, 7), 0.4)
    np.testing.assert_allclose(P.crosstalk(flat, 0.1), flat, rtol=1e-6)
    delta = jnp.zeros((5, 5)).at[2, 2].set(1.0)
    out = np.asarray(P.crosstalk(delta, 0.1))
    expected = np.zeros((5, 5))
    expected[2, 2] = 0.6
    expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 0.1
    np.testing.assert_allclose(out, expected, atol=1e-7)
    with pytest.raises(ValueError, match="cross-talk fraction"):
        P.crosstalk(delta, 0.3)
    # White quantum noise through the kernel: variance times (1 - 4f)^2 + 4 f^2; plus electronic.
    p, n0, f, sigma_e = 0.5, 2000.0, 0.1, 5.0
    img = jnp.full((128, 128), p)
    noisy = np.asarray(P.detector_noise(jax.random.key(4), img, n0, crosstalk_fraction=f, electronic_std=sigma_e))
    var = p / n0 * ((1 - 4 * f) ** 2 + 4 * f**2) + (sigma_e / n0) ** 2
    assert abs(noisy.mean() - p) < 4 * np.sqrt(var / img.size)
    assert abs(noisy.var() / var - 1) < 0.06
    np.testing.assert_array_equal(
        P.detector_noise(jax.random.key(4), img, n0, crosstalk_fraction=f, electronic_std=sigma_e), noisy
    )


def test_scatter_kernel():
    np.testing.assert_allclose(P.add_scatter(jnp.full((9, 11), 0.5), 0.4, 3.0), np.full((9, 11), 0.7), rtol=1e-5)
    img = np.random.default_rng(5).uniform(0, 1, (9, 11))
    sigma = 2.5
    ref = np.zeros_like(img)
    for r in range(9):
        for c in range(11):
            wr = np.exp(-0.5 * ((np.arange(9) - r) / sigma) ** 2)
            wc = np.exp(-0.5 * ((np.arange(11) - c) / sigma) ** 2)
            ref[r, c] = (wr[:, None] * wc[None, :] * img).sum() / (wr.sum() * wc.sum())
    np.testing.assert_allclose(P.gaussian_blur(jnp.asarray(img), sigma), ref, rtol=1e-5)
    np.testing.assert_allclose(P.scatter(jnp.asarray(img), 0.3, sigma), 0.3 * ref, rtol=1e-5)
    g = jax.grad(lambda s: jnp.sum(P.add_scatter(jnp.asarray(img, jnp.float32), s, sigma)))(0.3)
    np.testing.assert_allclose(float(g), ref.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="scatter-to-primary ratio"):
        P.scatter(jnp.asarray(img), -0.1, sigma)


# ---------------------------------------------------------------- polychromatic rendering


def _cube_scene():
    """A 40 mm cube of 0 HU (soft tissue class, density 1.03 g/cm^3) with a 20 mm bone core of
    1000 HU, 4 mm voxels, centred at the origin; a 7 x 7 camera 600 mm away looking along +y."""
    from fluorojax.camera import Camera, look_at
    from fluorojax.volume import Volume

    hu = np.zeros((10, 10, 10), np.float32)
    hu[3:7, 3:7, 3:7] = 1000.0
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -18.0  # voxel boxes span [-20, 20] mm
    camera = Camera(7, 7, 12.0, 1000.0)
    pose = look_at((0.0, -600.0, 0.0), (0.0, 0.0, 0.0))
    return Volume(hu, affine), camera, pose


def _chord(sources, targets, lo, hi):
    """float64 length of each segment inside the box [lo, hi]^3 (slab method)."""
    d = targets - sources
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - sources) / d, (hi - sources) / d
    tmin = np.clip(np.max(np.minimum(t0, t1), axis=-1), 0, 1)
    tmax = np.clip(np.min(np.maximum(t0, t1), axis=-1), 0, 1)
    return np.maximum(tmax - tmin, 0) * np.linalg.norm(d, axis=-1)


def test_render_polychromatic_matches_numpy_chords():
    volume, camera, pose = _cube_scene()
    spec = P.spectrum(90, n_bins=16)
    image = np.asarray(jax.jit(lambda p: fj.render_polychromatic(volume, camera, p, spec))(pose))
    assert image.shape == (7, 7)
    sources, targets = (np.asarray(x, np.float64) for x in camera.rays(pose))
    outer, core = _chord(sources, targets, -20.0, 20.0), _chord(sources, targets, -8.0, 8.0)
    rho_soft, rho_bone = 1.03, 0.0005886 * 1000 + 1.03
    areal = np.stack([np.zeros_like(outer), rho_soft * (outer - core), rho_bone * core], -1) / 10.0
    expected = np_transmission(areal, P.DEFAULT_MATERIALS, spec)
    assert expected.min() < 0.5 and expected.max() == 1.0  # bone, tissue and open beam in view
    np.testing.assert_allclose(image, expected, rtol=2e-4, atol=1e-6)
    # A precomputed material volume, segmented or dense, renders the same image.
    prepared = P.material_volume(volume)
    assert prepared.data.shape == (10, 10, 10) and prepared.channels == 3
    np.testing.assert_allclose(prepared.dense().data, P.material_densities(volume.data))
    for v in (prepared, prepared.dense()):
        np.testing.assert_allclose(
            jax.jit(lambda p, v=v: fj.render_polychromatic(v, camera, p, spec))(pose), image, rtol=1e-6
        )
    with pytest.raises(ValueError, match="3 channels for 2 materials"):
        fj.render_polychromatic(prepared, camera, pose, spec, materials=("water", "cortical_bone"))
    with pytest.raises(ValueError, match="one material per class"):
        fj.render_polychromatic(volume, camera, pose, spec, materials=("water", "cortical_bone"))


def test_render_polychromatic_gradients():
    """Gradients with respect to the pose (trilinear: Siddon images of axis-parallel rays are
    piecewise constant in a lateral shift) and to the CT values, against central differences."""
    from fluorojax.volume import Volume

    _, camera, pose = _cube_scene()
    ijk = np.stack(np.meshgrid(*[np.arange(10.0)] * 3, indexing="ij"), -1)
    blob = -1000.0 + 2400.0 * np.exp(-np.sum((ijk - 4.5) ** 2, -1) / (2 * 2.5**2))  # air, tissue and bone
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -18.0
    volume = Volume(blob.astype(np.float32), affine)
    spec = P.spectrum(60, n_bins=8)

    @jax.jit
    def loss(shift, offset_hu):
        moved = pose.at[0, 3].add(shift)
        scaled = volume.replace(data=volume.data + offset_hu)
        image = P.neglog(fj.render_polychromatic(scaled, camera, moved, spec, method="trilinear", n_samples=64))
        return jnp.sum(image * jnp.arange(1.0, 8.0))  # column weights: a shift moves the image's centroid

    # No voxel lies within 1 HU of a class threshold or of the density curve's kink at 0 HU.
    assert np.min(np.abs(blob[..., None] - np.array([-800.0, 0.0, 350.0]))) > 1.0
    g_shift, g_offset = jax.grad(loss, argnums=(0, 1))(0.3, 0.0)
    fd_shift = (loss(0.3 + 0.05, 0.0) - loss(0.3 - 0.05, 0.0)) / 0.1
    fd_offset = (loss(0.3, 1.0) - loss(0.3, -1.0)) / 2.0
    assert abs(float(g_shift)) > 1e-2
    np.testing.assert_allclose(float(g_shift), float(fd_shift), rtol=0.05)
    np.testing.assert_allclose(float(g_offset), float(fd_offset), rtol=0.02)
