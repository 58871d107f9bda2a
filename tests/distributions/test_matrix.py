import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import multigammaln

from skprobae.distributions import BUILTIN_DISTRIBUTIONS, MatrixNormal, MatrixStudentT, make_distribution

MATRIX_NAMES = [name for name in BUILTIN_DISTRIBUTIONS if name.startswith("matrix")]


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_tril(n, rng):
    return np.tril(rng.normal(size=(n, n)), -1) * 0.5 + np.diag(np.exp(rng.normal(size=n) * 0.3))


def dense_scales(family, params):
    """Row and column scale matrices U, V of one parameter row, as dense numpy arrays."""
    _, row, col, _ = family._factors(params)
    H, W = family.matrix_shape
    if row is None:
        return np.eye(H), np.eye(W)
    if family.scale == "diag":
        return np.diag(row.numpy() ** 2), np.diag(col.numpy() ** 2)
    return (row @ row.mT).numpy(), (col @ col.mT).numpy()


def dense_matrix_t_logpdf(X, M, U, V, df):
    """Gupta & Nagar's matrix-t density, written out with dense inverses and determinants."""
    H, W = M.shape
    D = X - M
    inner = np.eye(H) + np.linalg.inv(U) @ D @ np.linalg.inv(V) @ D.T
    return (
        multigammaln((df + H + W - 1) / 2, H)
        - multigammaln((df + H - 1) / 2, H)
        - H * W / 2 * np.log(np.pi)
        - W / 2 * np.linalg.slogdet(U)[1]
        - H / 2 * np.linalg.slogdet(V)[1]
        - (df + H + W - 1) / 2 * np.linalg.slogdet(inner)[1]
    )


@pytest.mark.parametrize("shape", [(2, 3), (4, 2), (3, 3)])
@pytest.mark.parametrize("name", ["matrix_normal", "matrix_normal_diag", "matrix_normal_full"])
def test_matrix_normal_matches_dense_kronecker_normal(name, shape):
    H, W = shape
    family = make_distribution(name, H * W, image_shape=shape)
    rng = np.random.default_rng(0)
    params = torch.tensor(rng.normal(size=(1, family.n_params)))
    U, V = dense_scales(family, params[0])
    x = rng.normal(size=(20, H * W)) * 2
    # Row-major flattening: Cov(X_ij, X_kl) = U_ik V_jl is kron(U, V).
    expected = stats.multivariate_normal(params[0, : H * W].numpy(), np.kron(U, V)).logpdf(x)
    actual = family.log_prob(params.expand(20, -1), torch.tensor(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    np.testing.assert_allclose(actual, expected, rtol=1e-10)  # float64 agreement is much tighter
    np.testing.assert_allclose(family.variance(params)[0], np.diag(np.kron(U, V)), rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3), (4, 2), (3, 3), (1, 4)])
@pytest.mark.parametrize("name", ["matrix_t", "matrix_t_diag", "matrix_t_full"])
def test_matrix_t_matches_dense_density_formula(name, shape):
    H, W = shape
    family = make_distribution(name, H * W, image_shape=shape)
    rng = np.random.default_rng(1)
    params = torch.tensor(rng.normal(size=(6, family.n_params)))
    x = rng.normal(size=(6, H * W)) * 2
    actual = family.log_prob(params, torch.tensor(x)).numpy()
    for i in range(6):
        U, V = dense_scales(family, params[i])
        df = family.distribution(params[i : i + 1]).df.item()
        M = params[i, : H * W].numpy().reshape(H, W)
        expected = dense_matrix_t_logpdf(x[i].reshape(H, W), M, U, V, df)
        np.testing.assert_allclose(actual[i], expected, rtol=1e-10)


def test_one_row_matrix_t_is_scipy_multivariate_t():
    rng = np.random.default_rng(2)
    W, df = 4, 3.7
    A, B = torch.tensor([[1.3]]), torch.tensor(random_tril(W, rng))
    loc = torch.tensor(rng.normal(size=W))
    dist = MatrixStudentT(torch.tensor(df), loc, (1, W), A, B, triangular=True)
    x = rng.normal(size=(10, W))
    shape_matrix = 1.3**2 * (B @ B.T).numpy() / df
    expected = stats.multivariate_t(loc.numpy(), shape_matrix, df=df).logpdf(x)
    np.testing.assert_allclose(dist.log_prob(torch.tensor(x)), expected, rtol=1e-10)


@pytest.mark.parametrize("cls", [MatrixNormal, MatrixStudentT])
def test_sampling_matches_kronecker_covariance(cls):
    """Monte-Carlo check of the samplers and of the per-pixel variance formula (exact for both)."""
    rng = np.random.default_rng(3)
    H, W, df = 2, 3, 7.0
    A, B = torch.tensor(random_tril(H, rng)), torch.tensor(random_tril(W, rng))
    loc = torch.tensor(rng.normal(size=H * W))
    args = (loc, (H, W), A, B, True)
    dist = MatrixNormal(*args) if cls is MatrixNormal else MatrixStudentT(torch.tensor(df), *args)
    torch.manual_seed(0)
    draws = dist.sample((400_000,)).numpy()
    covariance = np.kron((A @ A.T).numpy(), (B @ B.T).numpy()) / (1.0 if cls is MatrixNormal else df - 2)
    np.testing.assert_allclose(draws.mean(0), loc.numpy(), atol=0.02)
    # Sample-variance error is ~ sqrt(2 / n) for normal draws, heavier for t with df = 7.
    np.testing.assert_allclose(np.cov(draws, rowvar=False), covariance, atol=0.05 * np.abs(covariance).max())
    np.testing.assert_allclose(dist.variance.numpy(), np.diag(covariance), rtol=1e-12)


def test_matrix_t_variance_undefined_for_small_df():
    dist = MatrixStudentT(torch.tensor([1.5, 3.0]), torch.zeros(2, 4), (2, 2))
    variance = dist.variance
    assert torch.isnan(variance[0]).all() and torch.allclose(variance[1], torch.ones(4))
    assert torch.isfinite(dist.mean).all()


def test_matrix_normal_identity_is_the_unit_normal():
    matrix, normal = make_distribution("matrix_normal", 12, image_shape=(3, 4)), make_distribution("normal", 12)
    params, x = torch.randn(5, 12), torch.randn(5, 12)
    np.testing.assert_allclose(matrix.log_prob(params, x), normal.log_prob(params, x), rtol=1e-12)


@pytest.mark.parametrize("name", MATRIX_NAMES)
@pytest.mark.parametrize("n_mixtures", [1, 3])
def test_matrix_family_shapes_mixtures_and_gradients(name, n_mixtures):
    family = make_distribution(name, 12, n_mixtures, image_shape=(1, 3, 4))
    params = torch.randn(6, family.n_params, requires_grad=True)
    x = torch.randn(6, 12)
    log_prob = family.log_prob(params, x)
    assert log_prob.shape == (6,) and torch.isfinite(log_prob).all()
    np.testing.assert_allclose(log_prob.detach(), family.distribution(params).log_prob(x).detach(), rtol=1e-10)
    family.loss(params, x).backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    with torch.no_grad():
        assert family.point_estimate(params).shape == family.variance(params).shape == (6, 12)
        assert family.distribution(params).sample((2,)).shape == (2, 6, 12)
        points, log_weights = family.components(params)
    assert points.shape == (6, n_mixtures, 12) and log_weights.shape == (6, n_mixtures)


def test_matrix_family_parameter_counts():
    H, W = 3, 4
    counts = {name: make_distribution(name, 12, image_shape=(H, W)).n_params for name in MATRIX_NAMES}
    assert counts == {
        "matrix_normal": 12,
        "matrix_normal_diag": 12 + H + W,
        "matrix_normal_full": 12 + 6 + 10,
        "matrix_t": 13,
        "matrix_t_diag": 13 + H + W,
        "matrix_t_full": 13 + 6 + 10,
    }


@pytest.mark.parametrize(
    ("image_shape", "match"),
    [
        (None, "needs image_shape"),
        ((2, 3, 2), "one-channel"),
        ((3, 5), "holds 15 values but X has 12"),
    ],
)
def test_matrix_family_shape_errors(image_shape, match):
    with pytest.raises(ValueError, match=match):
        make_distribution("matrix_t_diag", 12, image_shape=image_shape)
