import copy
import io
import math
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from skprobae import ProbabilisticAutoencoder
from skprobae.distributions import BUILTIN_DISTRIBUTIONS

NAMES = ["mse", "normal", "normal_diag", "normal_full", "t", "t_diag", "t_full"]
ALL_NAMES = list(BUILTIN_DISTRIBUTIONS)
FAST = {"n_components": 4, "hidden_layer_sizes": (32,), "max_epochs": 5, "random_state": 0}


@pytest.fixture(scope="module")
def fitted(digits):
    X, _ = digits
    return ProbabilisticAutoencoder(distribution="normal_diag", n_mixtures=2, **FAST).fit(X)


# ------------------------------------------------------------- every family
def test_all_fourteen_families_are_registered():
    from skprobae.distributions import available_distributions

    assert len(ALL_NAMES) == 14 and set(ALL_NAMES) <= set(available_distributions())


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("n_mixtures", [1, 3])
@pytest.mark.parametrize("distribution", ALL_NAMES)
def test_every_distribution_fits_digits(digits, distribution, n_mixtures, architecture):
    X, _ = digits
    params = {**FAST, "max_epochs": 3} if architecture == "conv" else FAST
    model = ProbabilisticAutoencoder(
        distribution=distribution, n_mixtures=n_mixtures, architecture=architecture, image_shape=(8, 8), **params
    ).fit(X)
    assert np.isfinite(model.history_[:, "train_loss"]).all()
    scores = model.score_samples(X)
    assert scores.shape == (len(X),) and scores.dtype == np.float64 and np.isfinite(scores).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        point, std = model.reconstruct(X[:50], return_std=True)
    assert point.shape == std.shape == (50, 64) and np.isfinite(point).all()
    undefined = [str(w.message) for w in caught if "std is undefined" in str(w.message)]
    n_undefined = int((~np.isfinite(std)).sum())
    assert (undefined == []) if not n_undefined else f"for {n_undefined} of 3200 continuous" in undefined[0]
    if "t" in distribution.split("_"):
        assert np.all(np.isnan(std) | (std > 0))  # NaN only where the variance does not exist
    else:
        assert np.isfinite(std).all() and (std > 0).all()
    points, log_weights = model.predict_components(X[:5])
    assert points.shape == (5, n_mixtures, 64) and log_weights.shape == (5, n_mixtures)


def test_t_diag_works_exactly_as_written(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(distribution="t_diag", n_components=10).fit(X)
    assert model.transform(X).shape == (len(X), 10)
    assert np.isfinite(model.score_samples(X)).all()


def test_learned_variance_beats_unit_variance_on_held_out_digits():
    from sklearn.datasets import load_digits

    X = load_digits().data / 16  # pixel intensities in [0, 1], as images are usually scaled
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=0)
    params = {"n_components": 8, "max_epochs": 30, "random_state": 0, "standardize": False}
    fixed = ProbabilisticAutoencoder(distribution="normal", **params).fit(X_train).score(X_test)
    learned = ProbabilisticAutoencoder(distribution="normal_diag", **params).fit(X_train).score(X_test)
    assert learned > fixed + 10


def test_normal_std_is_one_and_mse_matches_normal_density(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(distribution="mse", **FAST).fit(X)
    point, std = model.reconstruct(X[:10], return_std=True)
    np.testing.assert_array_equal(std, 1.0)
    expected = -0.5 * ((X[:10] - point) ** 2).sum(1) - 32 * math.log(2 * math.pi)
    # per-feature terms in float32 (the networks' dtype), summed in float64
    np.testing.assert_allclose(model.score_samples(X[:10]), expected, rtol=1e-7)
    exact = model.set_params(inference_dtype="float64")
    point = exact.reconstruct(X[:10])
    expected = -0.5 * ((X[:10] - point) ** 2).sum(1) - 32 * math.log(2 * math.pi)
    np.testing.assert_allclose(exact.score_samples(X[:10]), expected, rtol=1e-12)


# -------------------------------------------------------------- methods
def test_transform_and_inverse_transform(fitted, digits):
    X, _ = digits
    Z = fitted.transform(X[:20])
    assert Z.shape == (20, 4) and Z.dtype == np.float64
    np.testing.assert_allclose(fitted.inverse_transform(Z), fitted.reconstruct(X[:20]), rtol=1e-10)
    with pytest.raises(ValueError, match="n_components=4"):
        fitted.inverse_transform(np.zeros((2, 3)))


def test_sample_and_sample_reconstructions_are_seeded(fitted, digits):
    X, _ = digits
    a, b = fitted.sample(7, random_state=1), fitted.sample(7, random_state=1)
    assert a.shape == (7, 64) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, fitted.sample(7, random_state=2))
    draws = fitted.sample_reconstructions(X[:3], n_samples=400, random_state=0)
    assert draws.shape == (3, 400, 64)
    np.testing.assert_array_equal(draws, fitted.sample_reconstructions(X[:3], n_samples=400, random_state=0))
    # The draws follow p(x_rec | x): their mean and std approach the model's.
    mean, std = fitted.reconstruct(X[:3], return_std=True)
    np.testing.assert_allclose(draws.mean(1), mean, atol=4 * std.max() / 20)
    np.testing.assert_allclose(draws.std(1), std, rtol=0.25, atol=1e-3)


def test_sample_draws_codes_from_training_gaussian(fitted, digits):
    X, _ = digits
    codes = fitted.transform(X)
    np.testing.assert_allclose(fitted.latent_mean_, codes.mean(0))
    np.testing.assert_allclose(fitted.latent_covariance_, np.cov(codes.T))
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_components_log_weights_are_normalised(fitted, digits):
    X, _ = digits
    _, log_weights = fitted.predict_components(X[:10])
    np.testing.assert_allclose(np.exp(log_weights).sum(1), 1.0)


def test_feature_names_and_pandas_output(digits):
    pd = pytest.importorskip("pandas")
    X, _ = digits
    model = ProbabilisticAutoencoder(**FAST).set_output(transform="pandas").fit(X)
    Z = model.transform(X[:5])
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"probabilisticautoencoder{i}" for i in range(4)]
    np.testing.assert_array_equal(model.get_feature_names_out(), Z.columns)


def test_float32_input_gives_float64_outputs(digits):
    X = digits[0].astype(np.float32)
    model = ProbabilisticAutoencoder(**FAST).fit(X)
    for out in (model.transform(X), model.score_samples(X), model.decision_function(X), model.reconstruct(X)):
        assert out.dtype == np.float64


# ----------------------------------------------------- seeding and training
def test_same_seed_gives_identical_fits_and_leaves_global_rng_alone(digits):
    X, _ = digits
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 - checking the legacy global RNG is untouched
    first = ProbabilisticAutoencoder(**FAST).fit(X)
    second = ProbabilisticAutoencoder(**FAST).fit(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    np.testing.assert_array_equal(first.score_samples(X), second.score_samples(X))
    np.testing.assert_array_equal(first.history_[:, "train_loss"], second.history_[:, "train_loss"])
    other = ProbabilisticAutoencoder(**{**FAST, "random_state": 1}).fit(X)
    assert not np.allclose(first.score_samples(X), other.score_samples(X))


def test_history_and_early_stopping_restore_best_weights(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(
        n_components=4, max_epochs=300, n_iter_no_change=3, learning_rate=1e-2, random_state=0
    ).fit(X)
    valid = np.array(model.history_[:, "valid_loss"])
    assert len(model.history_) == model.n_iter_ < 300  # stopped early
    best = int(np.argmin(valid))
    assert model.n_iter_ == best + 1 + 3
    # The restored weights are those of the best epoch: recompute its validation loss.
    order = check_random_state(0).permutation(len(X))
    X_valid = X[order[: math.ceil(0.1 * len(X))]]
    np.testing.assert_allclose(-model.score(X_valid), valid[best], rtol=1e-4)


def test_without_validation_monitors_training_loss(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(**{**FAST, "validation_fraction": 0.0}).fit(X)
    assert "valid_loss" not in model.history_[-1]
    assert model.n_iter_ == 5


def test_fewer_samples_than_a_batch(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(**FAST).fit(X[:10])
    assert np.isfinite(model.score_samples(X[:10])).all()
    with pytest.warns(UserWarning, match="too few for validation_fraction"):
        single = ProbabilisticAutoencoder(**FAST).fit(X[:1])
    assert np.isfinite(single.score_samples(X[:3])).all()


def test_verbose_shows_progress_and_why_training_stopped(digits, capsys):
    X, _ = digits
    ProbabilisticAutoencoder(**FAST).fit(X[:200])
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    ProbabilisticAutoencoder(**{**FAST, "verbose": 1}).fit(X[:200])
    out = capsys.readouterr()
    assert "autoencoder" in out.err and "epoch" in out.err  # the progress bar, labelled
    assert "train_loss" not in out.out  # no per-epoch table at verbose=1
    assert "ProbabilisticAutoencoder autoencoder: ran all 5 epochs; kept epoch" in out.out
    ProbabilisticAutoencoder(**{**FAST, "verbose": 1, "max_epochs": 200, "n_iter_no_change": 2}).fit(X[:200])
    assert "stopped at epoch" in capsys.readouterr().out
    ProbabilisticAutoencoder(**{**FAST, "verbose": 2}).fit(X[:200])
    table = capsys.readouterr().out
    assert "train_loss" in table and "valid_loss" in table


# ----------------------------------------------------------- outliers
def test_outlier_detection_flags_noise_images():
    from sklearn.datasets import load_digits

    X, _ = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 16, size=(20, 64))
    X_all = np.vstack([X, noise])
    is_outlier = np.r_[np.zeros(len(X)), np.ones(len(noise))]
    model = make_pipeline(
        StandardScaler(),
        ProbabilisticAutoencoder(n_components=8, max_epochs=50, contamination=0.02, random_state=0),
    ).fit(X_all)
    auroc = roc_auc_score(is_outlier, -model.score_samples(X_all))
    assert auroc > 0.98
    predicted = model.predict(X_all)
    assert set(np.unique(predicted)) == {-1, 1}
    assert (predicted[is_outlier == 1] == -1).mean() >= 0.9
    estimator = model[-1]
    np.testing.assert_allclose(model.decision_function(X_all), model.score_samples(X_all) - estimator.offset_)
    assert (predicted == -1).mean() == pytest.approx(0.02, abs=0.005)


def test_pipeline_grid_search_picks_by_held_out_score(digits):
    X, _ = digits
    pipe = Pipeline([("scale", StandardScaler()), ("ae", ProbabilisticAutoencoder(max_epochs=10, random_state=0))])
    grid = {"ae__n_components": [2, 8], "ae__distribution": ["normal", "t_diag"]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X)
    means = search.cv_results_["mean_test_score"]
    assert np.isfinite(means).all()
    assert search.best_index_ == int(np.argmax(means))
    # Held-out log-likelihood prefers the larger latent space and the learned scales.
    assert search.best_params_ == {"ae__distribution": "t_diag", "ae__n_components": 8}
    assert np.isfinite(search.score(X))


# ------------------------------------------------------------- persistence
def test_pickle_and_joblib_round_trip(fitted, digits, tmp_path):
    X, _ = digits
    expected = fitted.score_samples(X), fitted.transform(X), fitted.sample(3, random_state=0)
    restored_pickle = pickle.loads(pickle.dumps(fitted))
    joblib.dump(fitted, tmp_path / "model.joblib")
    restored_joblib = joblib.load(tmp_path / "model.joblib")
    for restored in (restored_pickle, restored_joblib):
        got = restored.score_samples(X), restored.transform(X), restored.sample(3, random_state=0)
        for a, b in zip(expected, got, strict=False):
            np.testing.assert_array_equal(a, b)


def test_model_saved_on_cuda_loads_on_cpu(digits):
    """Simulate a GPU-fitted model: skorch remaps CUDA tensors to the CPU on load."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    X, _ = digits
    model = ProbabilisticAutoencoder(**FAST).fit(X)
    expected = model.score_samples(X)
    model.net_.device = "cuda"  # what a fit with device="cuda" records
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = joblib.load(buffer)
    assert any("cuda" in str(w.message).lower() for w in caught)
    assert str(restored.net_.device) == "cpu"
    np.testing.assert_array_equal(restored.score_samples(X), expected)


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.array([[0.0, np.nan], [np.nan, np.nan]]), ValueError, "every entry missing"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), ValueError, "infinity"),
        (sp.csr_matrix(np.eye(3)), TypeError, "[Ss]parse"),
        (np.arange(5.0), ValueError, "2D array"),
        (np.full((3, 2), 1e39), ValueError, "float32 range"),
    ],
)
def test_bad_training_data(X, error, match):
    with pytest.raises(error, match=match):
        ProbabilisticAutoencoder(**FAST).fit(X)


def test_wrong_number_of_features(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but ProbabilisticAutoencoder is expecting 64"):
        fitted.score_samples(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"distribution": "gauss"}, r"distribution.*normal_diag.*t_full"),
        ({"n_mixtures": 0}, "n_mixtures"),
        ({"n_components": 0}, "n_components"),
        ({"contamination": 0.6}, "contamination"),
        ({"contamination": 0.0}, "contamination"),
        ({"hidden_layer_sizes": (16, 0)}, "hidden_layer_sizes"),
        ({"activation": "swish"}, "activation"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_parameters(params, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=match):
        ProbabilisticAutoencoder(**{**FAST, **params}).fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_gpu():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ProbabilisticAutoencoder(**{**FAST, "device": "cuda"}).fit(np.zeros((4, 2)))


# --------------------------------------------------------------- images
@pytest.mark.parametrize("distribution", ["mse", "t_diag"])
def test_conv_architecture_on_digit_images(distribution):
    from sklearn.datasets import load_digits

    X = load_digits().data[:300] / 16
    model = ProbabilisticAutoencoder(distribution=distribution, architecture="conv", image_shape=(8, 8), **FAST).fit(
        X.reshape(-1, 8, 8)
    )
    scores = model.score_samples(X)
    np.testing.assert_array_equal(scores, model.score_samples(X.reshape(-1, 1, 8, 8)))
    assert np.isfinite(scores).all() and model.reconstruct(X).shape == X.shape


@pytest.mark.parametrize(
    ("params", "X_shape", "match"),
    [
        ({"architecture": "conv"}, (10, 64), "image_shape is required"),
        ({"image_shape": (8, 9)}, (10, 64), "holds 72 values but X has 64"),
        ({"image_shape": (8, 8)}, (10, 4, 16), r"images of shape \(4, 16\)"),
        ({}, (10, 8, 8), "set image_shape"),
    ],
)
def test_image_shape_errors(params, X_shape, match):
    with pytest.raises(ValueError, match=match):
        ProbabilisticAutoencoder(**{**FAST, **params}).fit(np.zeros(X_shape))


# -------------------------------------------------------- maf and matrix families
def test_maf_point_estimate_is_a_seeded_sample_mean(digits):
    X, _ = digits
    options = {"n_point_samples": 7, "transforms": 2, "hidden_layer_sizes": (12,)}
    model = ProbabilisticAutoencoder(distribution="maf", distribution_options=options, **FAST).fit(X[:300])
    head = model.net_.module_.head
    assert head.n_point_samples == 7 and len(head.flow.flow.transform.transforms) == 2
    point, std = model.reconstruct(X[:20], return_std=True)
    # Deterministic and independent of the other rows in the call: rows are evaluated in fixed-size
    # blocks, where a row's position can still move a float32 result by an ulp on some layer shapes.
    np.testing.assert_allclose(point[5:10], model.reconstruct(X[5:10]), rtol=1e-6, atol=1e-6)
    assert np.isfinite(std).all() and (std > 0).all()
    draws = model.sample_reconstructions(X[:4], n_samples=3, random_state=0)
    assert draws.shape == (4, 3, 64) and np.isfinite(draws).all()
    # More draws average the flow's noise out: 7-sample means sit near a 2000-sample mean.
    fine = copy.deepcopy(model)
    fine.net_.module_.head.n_point_samples = 2000
    reference = fine.reconstruct(X[:20])
    assert np.abs(point - reference).mean() < 3 * np.abs(X[:20] - reference).mean() / np.sqrt(7)


def test_distribution_options_are_checked():
    X = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ValueError, match=r"distribution='normal_diag' takes no options; got distribution_options"):
        ProbabilisticAutoencoder(distribution_options={"n_point_samples": 3}, **FAST).fit(X)
    with pytest.raises(ValueError, match="takes only n_point_samples, transforms, hidden_layer_sizes"):
        ProbabilisticAutoencoder(distribution="maf", distribution_options={"depth": 3}, **FAST).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"distribution": "matrix_normal_diag"}, "needs image_shape"),
        ({"distribution": "matrix_t", "image_shape": (2, 4, 8)}, "one-channel"),
        ({"distribution": "matrix_t_full", "image_shape": (4, 4)}, "holds 16 values but X has 64"),
        ({"distribution": "matrix_gauss"}, "matrix_normal_diag"),
    ],
)
def test_matrix_family_errors(params, match):
    with pytest.raises(ValueError, match=match):
        ProbabilisticAutoencoder(**{**FAST, **params}).fit(np.zeros((10, 64)))


def test_image_shape_can_infer_one_side():
    X = np.random.default_rng(0).normal(size=(60, 12))
    model = ProbabilisticAutoencoder(distribution="matrix_t_diag", image_shape=(1, -1), **FAST).fit(X)
    assert model.net_.module_.head.matrix_shape == (1, 12) and np.isfinite(model.score_samples(X)).all()
    with pytest.raises(ValueError, match="cannot be filled by 12 features"):
        ProbabilisticAutoencoder(distribution="matrix_t", image_shape=(5, -1), **FAST).fit(X)


def test_matrix_normal_diag_variance_is_row_times_column(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(distribution="matrix_normal_diag", image_shape=(8, 8), **FAST).fit(X)
    _, std = model.reconstruct(X[:3], return_std=True)
    variance = (std**2).reshape(3, 8, 8)
    # A rank-one map per image: every 2x2 minor of the variance image vanishes.
    minors = variance[:, :-1, :-1] * variance[:, 1:, 1:] - variance[:, :-1, 1:] * variance[:, 1:, :-1]
    np.testing.assert_allclose(minors, 0, atol=1e-6 * variance.max() ** 2)  # float32 products


# ---------------------------------------------------------- custom modules
class TwoLayer(torch.nn.Module):
    def __init__(self, in_features, out_features, width=16):
        super().__init__()
        self.width = width
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_features, width), torch.nn.Tanh(), torch.nn.Linear(width, out_features)
        )

    def forward(self, x):
        return self.net(x)


def test_custom_encoder_and_decoder_classes_with_kwargs(digits):
    X, _ = digits
    model = ProbabilisticAutoencoder(
        encoder=TwoLayer, decoder=TwoLayer, encoder_kwargs={"width": 24}, decoder_kwargs={"width": 20}, **FAST
    ).fit(X)
    module = model.net_.module_
    assert isinstance(module.encoder, TwoLayer) and module.encoder.width == 24 and module.decoder.width == 20
    assert np.isfinite(model.score_samples(X)).all()
    # Only the decoder replaced: the encoder is the built-in MLP; torch.nn.Linear works as a class too.
    mixed = ProbabilisticAutoencoder(decoder=torch.nn.Linear, distribution="t_diag", **FAST).fit(X)
    assert isinstance(mixed.net_.module_.decoder, torch.nn.Linear)
    assert mixed.net_.module_.decoder.out_features == 2 * 64 + 1


def test_custom_module_kwargs_tune_with_grid_search(digits):
    X, _ = digits
    grid = GridSearchCV(
        ProbabilisticAutoencoder(encoder=TwoLayer, **FAST), {"encoder_kwargs": [{"width": 4}, {"width": 32}]}, cv=2
    ).fit(X[:400])
    # The kwargs reach every candidate's module (the two widths score differently) and the refit one.
    means = grid.cv_results_["mean_test_score"]
    assert means[0] != pytest.approx(means[1], rel=1e-6)
    assert grid.best_estimator_.net_.module_.encoder.width == grid.best_params_["encoder_kwargs"]["width"]
    assert grid.best_params_ == grid.cv_results_["params"][int(np.argmax(means))]


class WrongWidth(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features + 3)

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"decoder": WrongWidth}, ValueError, r"must return \(2, 128\).*'normal_diag' over 64 features"),
        ({"encoder": WrongWidth}, ValueError, r"must return \(2, 4\): 4 \(n_components=4\)"),
        ({"encoder": torch.nn.Linear(64, 4)}, TypeError, "not an instance"),
        ({"encoder": TwoLayer, "encoder_kwargs": {"depth": 2}}, TypeError, "could not be built"),
        ({"decoder": "mlp"}, ValueError, "decoder"),
    ],
)
def test_custom_module_errors(digits, params, error, match):
    X, _ = digits
    with pytest.raises(error, match=match):
        ProbabilisticAutoencoder(**{**FAST, **params}).fit(X[:50])
