"""Rigid transforms against scipy (float64), scipy.linalg.expm/logm, numpy and round trips."""

import functools
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from absl.testing import parameterized
from scipy.spatial.transform import Rotation

from fluorojax import transforms

# Every function under test is jitted once per shape: eager op-by-op dispatch is far slower on a
# shared CPU. Eager/jit parity is checked by JitParityTest with the raw functions.
_NAMES = [
    "so3_exp",
    "so3_log",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "se3_exp",
    "se3_log",
    "make_pose",
    "invert_pose",
    "apply_pose",
    "rotation_angle",
]
T = types.SimpleNamespace(
    **{name: jax.jit(getattr(transforms, name)) for name in _NAMES},
    euler_to_matrix=jax.jit(transforms.euler_to_matrix, static_argnames="convention"),
    matrix_to_euler=jax.jit(transforms.matrix_to_euler, static_argnames="convention"),
)

AXIS = np.array([0.48, -0.6, 0.64])  # a unit rotation axis
CONVENTIONS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "XYX", "XZX", "YXY", "YZY", "ZXZ", "ZYZ"]


def skew64(w):
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def twist_matrix(twist):
    """4x4 se(3) matrix [[skew(omega), rho], [0, 0]] in float64."""
    m = np.zeros((4, 4))
    m[:3, :3] = skew64(twist[3:])
    m[:3, 3] = twist[:3]
    return m


def random_rotvecs(rng, n, max_angle=np.pi - 1e-2):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * rng.uniform(0.0, max_angle, size=(n, 1))


def wxyz(rotation):
    """scipy quaternions (xyzw) -> (w, x, y, z) with w >= 0."""
    q = np.roll(rotation.as_quat(), 1, axis=-1)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def assert_rotation(r, atol=1e-5):
    r = np.asarray(r, np.float64)
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=atol)


# ---------------------------------------------------------------- so(3)


def test_so3_exp_matches_scipy_and_is_orthonormal():
    rng = np.random.default_rng(0)
    v = random_rotvecs(rng, 200, max_angle=np.pi)
    got = np.asarray(T.so3_exp(v))
    np.testing.assert_allclose(got, Rotation.from_rotvec(v).as_matrix(), atol=2e-6)
    assert_rotation(got)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 1e-5, 9.9e-5, 1e-4, 1.01e-4, 1e-3, 0.1])
def test_so3_exp_log_round_trip_near_zero(angle):
    # Both sides of the Taylor threshold (1e-4): relative error of the rotation vector.
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    v = axis * angle
    r64 = Rotation.from_rotvec(v).as_matrix()
    np.testing.assert_allclose(np.asarray(T.so3_exp(v)), r64, atol=1e-7)
    back = np.asarray(T.so3_log(r64.astype(np.float32)), np.float64)
    np.testing.assert_allclose(back, v, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("delta", [1e-1, 1e-2, 1e-3, 1e-4, 1e-5])
def test_so3_log_near_pi(delta):
    rng = np.random.default_rng(1)
    for axis in [np.eye(3)[0], np.eye(3)[2], rng.normal(size=3)]:
        axis = axis / np.linalg.norm(axis)
        v = axis * (np.pi - delta)
        back = np.asarray(T.so3_log(Rotation.from_rotvec(v).as_matrix().astype(np.float32)), np.float64)
        np.testing.assert_allclose(back, v, atol=2e-6)


def test_so3_log_at_pi_is_either_sign_of_the_axis():
    rng = np.random.default_rng(2)
    for axis in [np.eye(3)[0], np.eye(3)[1], np.eye(3)[2], rng.normal(size=3), np.ones(3)]:
        axis = axis / np.linalg.norm(axis)
        back = np.asarray(T.so3_log(Rotation.from_rotvec(np.pi * axis).as_matrix().astype(np.float32)), np.float64)
        assert np.linalg.norm(back) == pytest.approx(np.pi, abs=2e-6)
        err = min(np.abs(back - np.pi * axis).max(), np.abs(back + np.pi * axis).max())
        assert err < 1e-5


def test_so3_log_matches_scipy_on_random_rotations():
    rotations = Rotation.random(300, random_state=3)
    got = np.asarray(T.so3_log(rotations.as_matrix().astype(np.float32)), np.float64)
    want = rotations.as_rotvec()
    np.testing.assert_allclose(got, want, atol=5e-6)
    assert np.all(np.linalg.norm(got, axis=-1) <= np.pi + 1e-6)


def test_rotation_angle_matches_closed_form():
    a = Rotation.random(100, random_state=4).as_matrix()
    b = Rotation.random(100, random_state=5).as_matrix()
    want = np.arccos(np.clip((np.trace(np.swapaxes(a, 1, 2) @ b, axis1=1, axis2=2) - 1.0) / 2.0, -1, 1))
    got = np.asarray(T.rotation_angle(a.astype(np.float32), b.astype(np.float32)))
    np.testing.assert_allclose(got, want, atol=5e-6)
    # about one axis the angle is the difference of the two angles
    ra = Rotation.from_rotvec([0, 0, 0.3]).as_matrix().astype(np.float32)
    rb = Rotation.from_rotvec([0, 0, 2.9]).as_matrix().astype(np.float32)
    assert float(T.rotation_angle(ra, rb)) == pytest.approx(2.6, abs=1e-6)


# ---------------------------------------------------------------- quaternions


def test_quaternion_to_matrix_matches_scipy_and_normalises():
    rng = np.random.default_rng(6)
    q = rng.normal(size=(200, 4)) * rng.uniform(0.1, 10.0, size=(200, 1))  # not unit
    want = Rotation.from_quat(np.roll(q, -1, axis=-1)).as_matrix()
    got = np.asarray(T.quaternion_to_matrix(q))
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert_rotation(got)
    # q and -q are the same rotation
    np.testing.assert_allclose(np.asarray(T.quaternion_to_matrix(-q)), got, atol=1e-7)


def test_matrix_to_quaternion_matches_scipy_with_w_nonnegative():
    rotations = Rotation.random(300, random_state=7)
    got = np.asarray(T.matrix_to_quaternion(rotations.as_matrix().astype(np.float32)), np.float64)
    np.testing.assert_allclose(got, wxyz(rotations), atol=2e-6)
    assert np.all(got[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 1e-6, np.pi / 2, np.pi - 1e-4, np.pi])
def test_quaternion_round_trip_every_shepperd_branch(angle):
    # About each axis near pi a different diagonal candidate is the largest.
    for axis in [np.eye(3)[0], np.eye(3)[1], np.eye(3)[2], np.array([1.0, -2.0, 0.5]) / np.sqrt(5.25)]:
        r = Rotation.from_rotvec(axis * angle)
        q = np.asarray(T.matrix_to_quaternion(r.as_matrix().astype(np.float32)), np.float64)
        want = wxyz(r)
        # at exactly pi (w = 0) the sign is ambiguous
        err = min(np.abs(q - want).max(), np.abs(q + want).max())
        assert err < 2e-6
        np.testing.assert_allclose(np.asarray(T.quaternion_to_matrix(q)), r.as_matrix(), atol=2e-6)


# ---------------------------------------------------------------- Euler


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_euler_to_matrix_matches_scipy_intrinsic(convention):
    rng = np.random.default_rng(8)
    a = rng.uniform(-np.pi, np.pi, size=(100, 3))
    want = Rotation.from_euler(convention, a).as_matrix()  # uppercase = intrinsic in scipy
    got = np.asarray(T.euler_to_matrix(a, convention))
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert_rotation(got)
    # documented product R = R_c0(a0) R_c1(a1) R_c2(a2)
    prod = functools.reduce(
        np.matmul,
        [
            Rotation.from_rotvec(np.eye(3)["XYZ".index(ax)] * a[:, n : n + 1]).as_matrix()
            for n, ax in enumerate(convention)
        ],
    )
    np.testing.assert_allclose(got, prod, atol=2e-6)
    # lowercase names the same convention here
    np.testing.assert_allclose(np.asarray(T.euler_to_matrix(a, convention.lower())), got, atol=0)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_matrix_to_euler_matches_scipy_away_from_gimbal_lock(convention):
    rng = np.random.default_rng(9)
    proper = convention[0] == convention[2]
    a = rng.uniform(-np.pi, np.pi, size=(200, 3))
    # middle angle well inside its range (at least 0.05 rad from the lock)
    a[:, 1] = rng.uniform(0.05, np.pi - 0.05, 200) if proper else rng.uniform(-np.pi / 2 + 0.05, np.pi / 2 - 0.05, 200)
    r = Rotation.from_euler(convention, a).as_matrix()
    got = np.asarray(T.matrix_to_euler(r.astype(np.float32), convention), np.float64)
    # the decomposition is unique here: the angles themselves come back (mod 2 pi)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got - a))), 0.0, atol=1e-4)
    np.testing.assert_allclose(got, Rotation.from_matrix(r).as_euler(convention), atol=1e-4)
    if proper:
        assert np.all((got[:, 1] >= 0) & (got[:, 1] <= np.pi))
    else:
        assert np.all(np.abs(got[:, 1]) <= np.pi / 2)
    np.testing.assert_allclose(np.asarray(T.euler_to_matrix(got, convention)), r, atol=3e-6)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_matrix_to_euler_round_trips_random_rotations(convention):
    r = Rotation.random(300, random_state=10)
    # stay 5e-3 rad from gimbal lock (see the near-lock test below)
    mid = r.as_euler(convention)[:, 1]
    lock = (
        np.minimum(np.abs(mid), np.abs(np.pi - mid))
        if convention[0] == convention[2]
        else np.abs(np.pi / 2 - np.abs(mid))
    )
    m = r.as_matrix()[lock > 5e-3].astype(np.float32)
    back = T.euler_to_matrix(T.matrix_to_euler(m, convention), convention)
    np.testing.assert_allclose(np.asarray(back), m, atol=1e-4)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_matrix_to_euler_at_gimbal_lock_still_round_trips(convention):
    proper = convention[0] == convention[2]
    for middle in [0.0, np.pi] if proper else [np.pi / 2, -np.pi / 2]:
        for a1, a3 in [(0.7, -0.4), (-2.5, 1.9), (0.0, 0.0), (3.0, 3.0)]:
            r = Rotation.from_euler(convention, [a1, middle, a3]).as_matrix().astype(np.float32)
            got = np.asarray(T.matrix_to_euler(r, convention))
            assert np.all(np.isfinite(got))
            assert got[2] == 0.0  # documented: at lock the third angle is zero
            assert got[1] == pytest.approx(middle, abs=1e-3)
            np.testing.assert_allclose(np.asarray(T.euler_to_matrix(got, convention)), r, atol=2e-6)


@pytest.mark.parametrize("convention", ["ZYX", "XYZ", "ZXZ", "XYX"])
def test_matrix_to_euler_near_gimbal_lock_round_trips(convention):
    proper = convention[0] == convention[2]
    for delta in [1.2e-3, 5e-4]:
        middle = delta if proper else np.pi / 2 - delta
        r = Rotation.from_euler(convention, [0.7, middle, -0.4]).as_matrix().astype(np.float32)
        back = T.euler_to_matrix(T.matrix_to_euler(r, convention), convention)
        np.testing.assert_allclose(np.asarray(back), r, atol=1e-5)


@pytest.mark.parametrize("bad", ["XXY", "XYY", "XY", "XYZW", "ABC", "xqz", 3, None])
def test_bad_euler_convention_raises(bad):
    with pytest.raises(ValueError, match="convention"):
        T.euler_to_matrix(np.zeros(3), bad)
    with pytest.raises(ValueError, match="convention"):
        T.matrix_to_euler(np.eye(3), bad)


# ---------------------------------------------------------------- 6D


def test_rotation_6d_round_trip_and_gram_schmidt():
    r = Rotation.random(100, random_state=11).as_matrix()
    r6 = np.asarray(T.matrix_to_rotation_6d(r.astype(np.float32)))
    np.testing.assert_allclose(r6, np.concatenate([r[:, :, 0], r[:, :, 1]], -1), atol=1e-7)
    np.testing.assert_allclose(np.asarray(T.rotation_6d_to_matrix(r6)), r, atol=2e-6)
    # arbitrary (non-orthonormal) 6D vectors: Gram-Schmidt in float64
    rng = np.random.default_rng(12)
    x = rng.normal(size=(100, 6)) * 3.0
    a, b = x[:, :3], x[:, 3:]
    c0 = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b - np.sum(c0 * b, 1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=1, keepdims=True)
    want = np.stack([c0, c1, np.cross(c0, c1)], -1)
    got = np.asarray(T.rotation_6d_to_matrix(x))
    np.testing.assert_allclose(got, want, atol=3e-6)
    assert_rotation(got)


# ---------------------------------------------------------------- SE(3)


def random_twists(rng, n, max_angle=np.pi - 1e-2):
    return np.concatenate([rng.normal(scale=50.0, size=(n, 3)), random_rotvecs(rng, n, max_angle)], -1)


def test_se3_exp_matches_matrix_exponential():
    rng = np.random.default_rng(13)
    twists = np.concatenate(
        [random_twists(rng, 50, np.pi), [[10.0, -20.0, 30.0, 0, 0, 0], [1.0, 2.0, 3.0, 1e-6, 0, 0]]]
    )
    got = np.asarray(T.se3_exp(twists))
    want = np.stack([scipy.linalg.expm(twist_matrix(t)) for t in twists])
    np.testing.assert_allclose(got[:, :3, :3], want[:, :3, :3], atol=2e-6)
    np.testing.assert_allclose(got[:, :3, 3], want[:, :3, 3], atol=2e-4, rtol=1e-5)
    np.testing.assert_array_equal(got[:, 3], np.broadcast_to([0, 0, 0, 1], (len(twists), 4)))


def test_se3_log_matches_matrix_logarithm_and_round_trips():
    rng = np.random.default_rng(14)
    twists = random_twists(rng, 50)
    poses = np.stack([scipy.linalg.expm(twist_matrix(t)) for t in twists])
    got = np.asarray(T.se3_log(poses.astype(np.float32)), np.float64)
    np.testing.assert_allclose(got, twists, atol=5e-4, rtol=1e-4)
    log64 = np.stack([np.real(scipy.linalg.logm(p)) for p in poses])
    np.testing.assert_allclose(got[:, :3], log64[:, :3, 3], atol=5e-4, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(T.se3_exp(got)), poses, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 5e-5, 1e-1, np.pi - 1e-3, np.pi])
def test_se3_round_trip_at_small_and_large_angles(angle):
    axis = np.array([0.6, 0.0, -0.8])
    twist = np.concatenate([[12.0, -7.0, 3.0], axis * angle])
    pose = np.asarray(T.se3_exp(twist))
    np.testing.assert_allclose(pose, scipy.linalg.expm(twist_matrix(twist)), atol=1e-5)
    back = np.asarray(T.se3_exp(T.se3_log(pose)))
    np.testing.assert_allclose(back, pose, atol=1e-4)


def se3_translation_jacobian_fd(twist, h=1e-7):
    """d translation(expm(twist)) / d twist, (3, 6), float64 central differences."""
    cols = [
        (scipy.linalg.expm(twist_matrix(twist + h * e))[:3, 3] - scipy.linalg.expm(twist_matrix(twist - h * e))[:3, 3])
        / (2 * h)
        for e in np.eye(6)
    ]
    return np.stack(cols, 1)


SE3_TRANSLATION_JACOBIAN = jax.jit(jax.jacobian(lambda t: transforms.se3_exp(t)[:3, 3]))


@pytest.mark.parametrize("angle", [0.0, 1e-5, 5e-5, 0.1, 1.0, 3.0])
def test_se3_exp_value_and_jacobian_match_float64(angle):
    twist = np.concatenate([[30.0, -50.0, 20.0], AXIS * angle])
    jac = SE3_TRANSLATION_JACOBIAN(jnp.asarray(twist, jnp.float32))
    np.testing.assert_allclose(np.asarray(jac), se3_translation_jacobian_fd(twist), atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(T.se3_exp(twist))[:3, 3], scipy.linalg.expm(twist_matrix(twist))[:3, 3], atol=2e-5
    )


@pytest.mark.parametrize("angle", [2e-4, 1e-3, 1e-2])
def test_se3_exp_value_and_jacobian_above_taylor_threshold(angle):
    twist = np.concatenate([[30.0, -50.0, 20.0], AXIS * angle])
    jac = SE3_TRANSLATION_JACOBIAN(jnp.asarray(twist, jnp.float32))
    np.testing.assert_allclose(np.asarray(jac), se3_translation_jacobian_fd(twist), atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(T.se3_exp(twist))[:3, 3], scipy.linalg.expm(twist_matrix(twist))[:3, 3], atol=2e-5
    )


# ---------------------------------------------------------------- poses


def test_make_invert_apply_pose_against_numpy():
    rng = np.random.default_rng(15)
    r = Rotation.random(20, random_state=16).as_matrix()
    t = rng.normal(scale=100.0, size=(20, 3))
    pose = np.asarray(T.make_pose(r, t))
    want = np.zeros((20, 4, 4))
    want[:, :3, :3], want[:, :3, 3], want[:, 3, 3] = r, t, 1.0
    np.testing.assert_allclose(pose, want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(T.invert_pose(pose)), np.linalg.inv(want), atol=1e-4)
    pts = rng.normal(scale=50.0, size=(20, 3))
    np.testing.assert_allclose(np.asarray(T.apply_pose(pose, pts)), np.einsum("nij,nj->ni", r, pts) + t, atol=1e-4)
    # broadcasting: one rotation, many translations; poses (20, 4, 4) on points (7, 20, 3)
    assert T.make_pose(r[0], t).shape == (20, 4, 4)
    pts2 = rng.normal(size=(7, 20, 3))
    np.testing.assert_allclose(np.asarray(T.apply_pose(pose, pts2)), np.einsum("nij,knj->kni", r, pts2) + t, atol=1e-4)


def test_batched_shapes():
    rng = np.random.default_rng(17)
    v = rng.normal(size=(2, 5, 3)).astype(np.float32)
    tw = rng.normal(size=(2, 5, 6)).astype(np.float32)
    r = T.so3_exp(v)
    shape = lambda f, *args: jax.eval_shape(f, *args).shape  # noqa: E731
    assert r.shape == (2, 5, 3, 3)
    assert shape(transforms.so3_log, r) == (2, 5, 3)
    assert shape(transforms.matrix_to_quaternion, r) == (2, 5, 4)
    assert shape(transforms.quaternion_to_matrix, rng.normal(size=(2, 5, 4))) == (2, 5, 3, 3)
    assert shape(lambda x: transforms.euler_to_matrix(x, "ZYX"), v) == (2, 5, 3, 3)
    assert shape(lambda x: transforms.matrix_to_euler(x, "XYX"), r) == (2, 5, 3)
    assert shape(transforms.rotation_6d_to_matrix, rng.normal(size=(2, 5, 6))) == (2, 5, 3, 3)
    assert shape(transforms.matrix_to_rotation_6d, r) == (2, 5, 6)
    assert shape(transforms.se3_exp, tw) == (2, 5, 4, 4)
    assert shape(transforms.se3_log, T.se3_exp(tw)) == (2, 5, 6)
    assert shape(transforms.invert_pose, T.se3_exp(tw)) == (2, 5, 4, 4)
    assert shape(transforms.rotation_angle, r, r[:1]) == (2, 5)
    # batched results equal the one-at-a-time results
    batched = np.asarray(T.se3_log(T.se3_exp(tw)))
    single = np.stack([[np.asarray(T.se3_log(T.se3_exp(tw[i, j]))) for j in range(5)] for i in range(2)])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    batched = np.asarray(T.matrix_to_euler(r, convention="ZXZ"))
    single = np.stack([[np.asarray(T.matrix_to_euler(r[i, j], convention="ZXZ")) for j in range(5)] for i in range(2)])
    np.testing.assert_allclose(batched, single, atol=1e-6)


# ---------------------------------------------------------------- gradients

GRAD_ANGLES = np.array([0.0, 1e-5, 1.0, np.pi - 1e-3, np.pi])


def jgrad(f):
    return jax.jit(jax.grad(f))


def jjac(f):
    return jax.jit(jax.jacobian(f))


def test_gradients_are_finite_at_identity_and_pi():
    v = jnp.asarray(AXIS * GRAD_ANGLES[:, None], jnp.float32)  # one angle a row
    tw = jnp.concatenate([jnp.broadcast_to(jnp.array([3.0, -2.0, 1.0]), v.shape), v], -1)
    r = T.so3_exp(v)
    pose = T.se3_exp(tw)
    weights = jnp.arange(1.0, 10.0).reshape(3, 3)
    per_row = lambda f: jax.vmap(jax.grad(f))  # noqa: E731

    @jax.jit  # the eight gradients in one program: one compilation
    def gradients(v, r, tw, pose, r6d):
        return {
            "so3_exp": per_row(lambda x: jnp.sum(weights * transforms.so3_exp(x)))(v),
            "so3_log": per_row(lambda m: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * transforms.so3_log(m)))(r),
            "so3_log o exp": per_row(lambda x: jnp.sum(transforms.so3_log(transforms.so3_exp(x)) ** 2))(v),
            "se3_exp": per_row(lambda x: jnp.sum(transforms.se3_exp(x)[:3] ** 2))(tw),
            "se3_log": per_row(lambda p: jnp.sum(jnp.arange(1.0, 7.0) * transforms.se3_log(p)))(pose),
            "quaternion": per_row(lambda m: jnp.sum(transforms.matrix_to_quaternion(m) * jnp.arange(1.0, 5.0)))(r),
            "euler": per_row(lambda x: jnp.sum(weights * transforms.euler_to_matrix(x, "ZYX")))(v),
            "6d": per_row(lambda x: jnp.sum(weights * transforms.rotation_6d_to_matrix(x)))(r6d),
        }

    grads = gradients(v, r, tw, pose, T.matrix_to_rotation_6d(r))
    for name, g in grads.items():
        bad = ~np.all(np.isfinite(np.asarray(g)).reshape(len(GRAD_ANGLES), -1), axis=1)
        assert not bad.any(), f"{name}: non-finite gradient at angles {GRAD_ANGLES[bad]}"


def test_so3_exp_gradient_matches_finite_differences():
    # d/dv sum(W * exp(v)) in float64 central differences (scipy), at 0, a generic angle and pi.
    weights = np.arange(1.0, 10.0).reshape(3, 3)
    grad = jgrad(lambda x: jnp.sum(weights * T.so3_exp(x)))
    for v in [np.zeros(3), AXIS * 1.0, AXIS * np.pi]:
        g = np.asarray(grad(jnp.asarray(v, jnp.float32)))
        h = 1e-6
        fd = [
            (
                np.sum(weights * Rotation.from_rotvec(v + h * e).as_matrix())
                - np.sum(weights * Rotation.from_rotvec(v - h * e).as_matrix())
            )
            / (2 * h)
            for e in np.eye(3)
        ]
        np.testing.assert_allclose(g, fd, atol=2e-4, rtol=1e-4)


def test_so3_log_gradient_at_identity_is_identity_map():
    # log(exp(v)) = v, so its Jacobian at v = 0 is the identity.
    jac = np.asarray(jjac(lambda x: T.so3_log(T.so3_exp(x)))(jnp.zeros(3)))
    np.testing.assert_allclose(jac, np.eye(3), atol=1e-6)
    jac = np.asarray(jjac(lambda x: T.se3_log(T.se3_exp(x)))(jnp.zeros(6)))
    np.testing.assert_allclose(jac, np.eye(6), atol=1e-6)


def test_rotation_angle_gradient_finite_at_equal_rotations():
    r = T.so3_exp(jnp.array([0.3, -0.2, 0.5]))
    g = jgrad(lambda m: T.rotation_angle(r, m))(r)
    assert np.all(np.isfinite(np.asarray(g)))
    g = jgrad(lambda x: T.rotation_angle(jnp.eye(3), T.so3_exp(x)))(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))


def test_rotation_angle_gradient_is_finite_away_from_zero():
    r = T.so3_exp(jnp.array([0.3, -0.2, 0.5]))
    # d angle / d v along the axis of a rotation by v is 1
    g = jgrad(lambda x: T.rotation_angle(jnp.eye(3), T.so3_exp(x)))(jnp.asarray(AXIS * 0.7, jnp.float32))
    np.testing.assert_allclose(np.asarray(g), AXIS, atol=1e-5)
    g = jgrad(lambda m: T.rotation_angle(r, m))(T.so3_exp(jnp.array([2.0, 1.0, -1.0])))
    assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------- jit parity


class JitParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_so3_and_quaternion(self):
        v = Rotation.random(10, random_state=18).as_rotvec().astype(np.float32)
        want = Rotation.from_rotvec(v).as_matrix()
        r = self.variant(transforms.so3_exp)(v)
        np.testing.assert_allclose(np.asarray(r), want, atol=2e-6)
        np.testing.assert_allclose(np.asarray(self.variant(transforms.so3_log)(r)), v, atol=5e-6)
        q = self.variant(transforms.matrix_to_quaternion)(r)
        np.testing.assert_allclose(np.asarray(q), wxyz(Rotation.from_rotvec(v)), atol=2e-6)
        np.testing.assert_allclose(np.asarray(self.variant(transforms.quaternion_to_matrix)(q)), want, atol=2e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("ZYX", "XZX")
    def test_euler(self, convention):
        a = np.array([[0.3, -0.7, 1.2], [-2.0, 1.1, 0.4]], np.float32)
        if convention[0] == convention[2]:
            a[:, 1] = np.abs(a[:, 1])
        r = self.variant(functools.partial(transforms.euler_to_matrix, convention=convention))(a)
        np.testing.assert_allclose(np.asarray(r), Rotation.from_euler(convention, a).as_matrix(), atol=2e-6)
        back = self.variant(functools.partial(transforms.matrix_to_euler, convention=convention))(r)
        np.testing.assert_allclose(np.asarray(back), a, atol=2e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_se3_and_poses(self):
        tw = np.array([[10.0, -5.0, 2.0, 0.1, 0.2, -0.3], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
        pose = self.variant(transforms.se3_exp)(tw)
        want = np.stack([scipy.linalg.expm(twist_matrix(t.astype(np.float64))) for t in tw])
        np.testing.assert_allclose(np.asarray(pose), want, atol=1e-5)
        np.testing.assert_allclose(np.asarray(self.variant(transforms.se3_log)(pose)), tw, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(self.variant(transforms.invert_pose)(pose)), np.linalg.inv(want), atol=1e-5
        )
        r6 = self.variant(transforms.matrix_to_rotation_6d)(pose[:, :3, :3])
        np.testing.assert_allclose(
            np.asarray(self.variant(transforms.rotation_6d_to_matrix)(r6)), want[:, :3, :3], atol=2e-6
        )
        ang = self.variant(transforms.rotation_angle)(pose[:1, :3, :3], pose[:, :3, :3])
        np.testing.assert_allclose(np.asarray(ang), [0.0, np.linalg.norm(tw[0, 3:])], atol=1e-5)
