"""Label travel, masks and depths from the label-map traversal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import label_reference

import fluorojax as fj
from fluorojax.raycast.labels import render_labels, render_with_labels, trace_labels


def labelled_phantom():
    rng = np.random.default_rng(0)
    labels = np.zeros((14, 12, 10), np.int32)
    labels[2:9, 3:10, 2:8] = 3
    labels[6:12, 1:6, 4:9] = 7  # overlaps and replaces part of label 3
    labels[rng.uniform(size=labels.shape) < 0.05] = 11  # scattered voxels: many entries/exits
    affine = np.array([[1.5, 0, 0, -10.0], [0, 2.0, 0, -12.0], [0, 0, 2.5, -11.0], [0, 0, 0, 1]])
    data = rng.uniform(0.0, 0.03, size=labels.shape).astype(np.float32)
    return fj.Volume(data, affine, labels)


def test_travel_and_depths_match_brute_force():
    vol = labelled_phantom()
    rng = np.random.default_rng(1)
    centre = np.asarray(vol.center)
    sources = (centre + 60 * rng.normal(size=(80, 3))).astype(np.float32)
    targets = (2 * centre - sources + 5 * rng.normal(size=(80, 3))).astype(np.float32)
    trace = trace_labels(vol, sources, targets)
    np.testing.assert_array_equal(np.asarray(trace.label_ids), [3, 7, 11])
    labels = np.asarray(vol.labels)
    for c, label in enumerate((3, 7, 11)):
        want = np.array([label_reference(labels, vol.affine, s, t, label) for s, t in zip(sources, targets)])
        hit = want[:, 0] > 0
        assert hit.sum() > 10
        np.testing.assert_allclose(np.asarray(trace.travel[:, c]), want[:, 0], atol=1e-3)
        np.testing.assert_allclose(np.asarray(trace.entry[hit, c]), want[hit, 1], rtol=1e-5)
        np.testing.assert_allclose(np.asarray(trace.exit[hit, c]), want[hit, 2], rtol=1e-5)
        assert np.all(np.isinf(np.asarray(trace.entry[~hit, c])))
    # The same pass gives the DRR exactly as line_integrals does.
    np.testing.assert_allclose(np.asarray(trace.image), np.asarray(fj.line_integrals(vol, sources, targets)), rtol=1e-6)


def test_render_labels_order_shapes_and_masks():
    vol = labelled_phantom()
    cam = fj.Camera(12, 14, 2.0, 150.0)
    poses = fj.carm_pose(jnp.array([0.0, 40.0]), jnp.array([0.0, -20.0]), 75.0, vol.center)
    travel = render_labels(vol, cam, poses[0], label_ids=[7, 3])
    assert travel.shape == (2, 12, 14)
    full = render_with_labels(vol, cam, poses)
    assert full.travel.shape == (2, 3, 12, 14) and full.image.shape == (2, 12, 14)
    np.testing.assert_array_equal(np.asarray(travel[0]), np.asarray(full.travel[0, 1]))
    np.testing.assert_array_equal(np.asarray(travel[1]), np.asarray(full.travel[0, 0]))
    # Total travel through all labels never exceeds the ray's chord through the grid.
    ones = fj.Volume(np.ones(vol.shape, np.float32), vol.affine)
    chord = fj.render(ones, cam, poses[1])
    assert np.all(np.asarray(full.travel[1].sum(0)) <= np.asarray(chord) + 1e-3)


def test_drr_from_the_labelled_pass_is_differentiable():
    vol = labelled_phantom()
    cam = fj.Camera(6, 6, 2.0, 150.0)
    pose = fj.carm_pose(10.0, 5.0, 75.0, vol.center)

    def loss(data, which):
        v = fj.Volume(data, vol.affine, vol.labels)
        if which == "labels":
            return jnp.sum(render_with_labels(v, cam, pose, label_ids=[3, 7]).image)
        return jnp.sum(fj.render(v, cam, pose))

    np.testing.assert_allclose(
        np.asarray(jax.grad(loss)(vol.data, "labels")), np.asarray(jax.grad(loss)(vol.data, "plain")), rtol=1e-6
    )


def test_bad_label_ids_are_rejected():
    vol = labelled_phantom()
    cam = fj.Camera(4, 4, 2.0, 150.0)
    pose = fj.carm_pose(0.0, 0.0, 75.0, vol.center)
    for bad in ([], [0], [3, 3], [2.5]):
        with pytest.raises(ValueError, match="label_ids"):
            render_labels(vol, cam, pose, label_ids=bad)
    with pytest.raises(ValueError, match="at most 1048575"):
        render_labels(vol, cam, pose, label_ids=[3, 1 << 20])
    with pytest.raises(ValueError, match="no non-zero ids"):
        render_labels(vol.replace(labels=np.zeros(vol.shape, np.int32)), cam, pose)
    with pytest.raises(ValueError, match="traced"):
        jax.jit(lambda v: render_labels(v, cam, pose))(vol)
