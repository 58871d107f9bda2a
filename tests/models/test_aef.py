import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.datasets import load_digits

from skprobae import AEF
from skprobae.models._aef import core_indices

SMALL_FLOWS = {"flow_transforms": 2, "flow_hidden_layer_sizes": (16,)}
FAST = {"n_components": 4, "hidden_layer_sizes": (32,), "max_epochs": 5, "random_state": 0, **SMALL_FLOWS}


@pytest.fixture(scope="module")
def digits01():
    return load_digits().data[:600] / 16


@pytest.fixture(scope="module")
def banana():
    """x1 ~ N(0, 1), x2 | x1 ~ N(x1**2 / 2, 0.5**2), with its exact log-density."""
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=6000)
    X = np.column_stack([x1, x1**2 / 2 + 0.5 * rng.normal(size=6000)])
    log_density = norm.logpdf(X[:, 0]) + norm.logpdf(X[:, 1], X[:, 0] ** 2 / 2, 0.5)
    return X[:4000], X[5000:], log_density[5000:]


@pytest.fixture(scope="module")
def unit_square():
    rng = np.random.default_rng(1)
    return np.clip(rng.beta(2, 3, size=(2000, 2)), 0.01, 0.99)


def test_full_latent_random_partition_is_a_flow_matching_the_true_density(banana):
    X_train, X_test, true_log_density = banana
    aef = AEF(
        n_components=2,
        partition="random",
        hidden_layer_sizes=(8,),
        flow_transforms=3,
        flow_hidden_layer_sizes=(32,),
        max_epochs=40,
        batch_size=256,
        learning_rate=3e-3,
        random_state=0,
    ).fit(X_train)
    gap = aef.score_samples(X_test) - true_log_density
    # mean(gap) estimates -KL(p || model) <= 0. std(gap) is ~0.2, so over 1000 test rows its standard
    # error is ~0.006; 0.05 nats leaves room for a small fitting error on top of that.
    assert abs(gap.mean()) < 0.05, gap.mean()
    assert np.corrcoef(aef.score_samples(X_test), true_log_density)[0, 1] > 0.98


@pytest.mark.parametrize("n_components", [1, 2])
def test_exact_partition_density_integrates_to_one(unit_square, n_components):
    # Every log-det (logit, ActNorm, coupling scales, core flow) must be counted for this to hold,
    # whatever the training reached: a midpoint rule on [0, 1]^2.
    aef = AEF(
        n_components=n_components,
        partition="random",
        logit_lambda=1e-3,
        hidden_layer_sizes=(16,),
        max_epochs=10,
        random_state=0,
        **SMALL_FLOWS,
    ).fit(unit_square)
    grid = (np.arange(200) + 0.5) / 200
    G = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    assert np.exp(aef.score_samples(G)).mean() == pytest.approx(1.0, abs=0.01)


def test_linear_importance_estimate_converges(digits01):
    aef = AEF(partition="linear", **{**FAST, "max_epochs": 10}).fit(digits01)
    X = digits01[:100]
    reference = aef.set_params(n_importance_samples=4096).score_samples(X)
    errors, means = {}, {}
    for n_samples in (1, 16, 256):
        estimate = aef.set_params(n_importance_samples=n_samples).score_samples(X)
        errors[n_samples] = float(np.sqrt(np.mean((estimate - reference) ** 2)))
        means[n_samples] = float(estimate.mean())
    assert errors[1] > errors[16] > errors[256]
    assert means[1] < means[16] < means[256] < reference.mean() + 0.05  # a lower bound that tightens
    assert aef.importance_scale_ > 0


def test_history_terms_add_up_to_the_loss(digits01):
    aef = AEF(**FAST).fit(digits01)
    last = aef.history_[-1]
    for split in ("train", "valid"):
        total = last[f"{split}_prior"] + last[f"{split}_residual"] + last[f"{split}_log_det"]
        assert last[f"{split}_loss"] == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("partition", ["linear", "random"])
def test_scores_are_deterministic_row_independent_and_finite(digits01, partition):
    aef = AEF(partition=partition, n_importance_samples=32, **FAST).fit(digits01)
    scores = aef.score_samples(digits01[:50])
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, aef.score_samples(digits01[:50]))
    # Row-independent: another call's composition moves a float32 network output by an ulp at most.
    np.testing.assert_allclose(scores[10:20], aef.score_samples(digits01[10:20]), rtol=1e-6)
    again = AEF(partition=partition, n_importance_samples=32, **FAST).fit(digits01)
    np.testing.assert_array_equal(scores, again.score_samples(digits01[:50]))


def test_image_partitions_take_centre_and_corner_pixels():
    np.testing.assert_array_equal(core_indices("center", 4, 64, (8, 8)), [27, 28, 35, 36])
    np.testing.assert_array_equal(core_indices("corner", 4, 64, (8, 8)), [0, 1, 8, 9])
    np.testing.assert_array_equal(core_indices("corner", 9, 64, (8, 8)), [0, 1, 2, 8, 9, 10, 16, 17, 18])
    # every channel of a pixel joins the core together
    np.testing.assert_array_equal(core_indices("corner", 2, 32, (2, 4, 4)), [0, 16])
    assert core_indices("linear", 4, 64, None) is None


@pytest.mark.parametrize("partition", ["center", "corner", "random"])
def test_generation_inverts_encoding_for_partitions(digits01, partition):
    # Algorithm 2 decodes with zero residuals; encoding its output must give back the code exactly
    # (in float64; float32 networks invert the logit and the flow to about 1e-3).
    aef = AEF(partition=partition, image_shape=(8, 8), logit_lambda=1e-3, **FAST).fit(digits01)
    Z = aef.transform(digits01[:20])
    np.testing.assert_allclose(aef.transform(aef.inverse_transform(Z)), Z, atol=2e-3)
    aef.set_params(inference_dtype="float64")
    Z = aef.transform(digits01[:20])
    np.testing.assert_allclose(aef.transform(aef.inverse_transform(Z)), Z, atol=1e-6)
    _, std = aef.reconstruct(digits01[:5], return_std=True)
    assert (std[:, aef.core_indices_] == 0).all() and (np.delete(std, aef.core_indices_, axis=1) > 0).all()


@pytest.mark.parametrize("partition", ["linear", "center"])
def test_conv_aef_on_digit_images(digits01, partition):
    aef = AEF(
        architecture="conv",
        image_shape=(8, 8),
        partition=partition,
        conv_channels=(8, 16),
        logit_lambda=1e-3,
        n_importance_samples=16,
        **{**FAST, "max_epochs": 3},
    ).fit(digits01.reshape(-1, 8, 8))
    samples = aef.sample(6, random_state=0, temperature=0.85)
    assert samples.shape == (6, 64) and np.isfinite(samples).all()
    assert (samples > -0.01).all() and (samples < 1.01).all()  # the logit preprocessing keeps [0, 1]
    np.testing.assert_array_equal(samples, aef.sample(6, random_state=0, temperature=0.85))
    assert np.isfinite(aef.score_samples(digits01[:10])).all()


def test_methods_shapes(digits01):
    aef = AEF(**FAST).fit(digits01)
    assert aef.transform(digits01[:7]).shape == (7, 4)
    assert aef.inverse_transform(np.zeros((3, 4))).shape == (3, 64)
    X_rec, std = aef.reconstruct(digits01[:7], return_std=True)
    assert X_rec.shape == std.shape == (7, 64) and (std > 0).all()
    assert aef.residual_scale_.shape == (64,)
    # Outliers are the rows below the training quantile offset_, as IsolationForest labels them.
    np.testing.assert_array_equal(aef.predict(digits01), np.where(aef.score_samples(digits01) < aef.offset_, -1, 1))
    assert np.mean(aef.predict(digits01) == -1) == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize(
    ("params", "X_kind", "match"),
    [
        ({"partition": "center"}, "digits", "needs image_shape"),
        ({"partition": "corner", "image_shape": (4, 4)}, "digits", "image_shape"),
        ({"partition": "random", "n_components": 65}, "digits", "65 core features.*64 feature"),
        ({"partition": "diagonal"}, "digits", "partition"),
        ({"logit_lambda": 1e-6}, "standardized", r"columns \d"),
        ({"logit_lambda": 0.5}, "digits", "logit_lambda"),
        ({"conv_channels": ()}, "digits", "conv_channels"),
        ({"core_flow": "nsf"}, "digits", "core_flow"),
    ],
)
def test_bad_parameters(digits01, params, X_kind, match):
    X = digits01 if X_kind == "digits" else (digits01 - digits01.mean(0)) / (digits01.std(0) + 1e-9)
    with pytest.raises(ValueError, match=match):
        AEF(**{**FAST, **params}).fit(X)


def test_logit_check_also_guards_scoring(digits01):
    aef = AEF(logit_lambda=1e-6, **FAST).fit(digits01)
    X = digits01[:5].copy()
    X[:, 3] = 2.0
    with pytest.raises(ValueError, match="columns 3"):
        aef.score_samples(X)


def test_custom_networks():
    import torch

    X = load_digits().data[:200] / 16
    model = AEF(encoder=torch.nn.Linear, decoder=torch.nn.Linear, **FAST).fit(X)
    assert model.net_.module_.decoder.out_features == 64
    assert np.isfinite(model.score_samples(X[:10])).all()


def test_a_proposal_scale_search_with_no_finite_estimate_raises(digits01):
    from unittest import mock

    from skprobae.nn import AEFModule

    def nan_estimate(self, x, noise, scale):
        return torch.full((len(x),), torch.nan, dtype=torch.float64)

    with mock.patch.object(AEFModule, "importance_log_prob", nan_estimate):
        with pytest.raises(FloatingPointError, match="not finite at any proposal scale"):
            AEF(**FAST).fit(digits01)
