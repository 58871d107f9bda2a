import copy
import math
import pickle

import numpy as np
import pytest
import torch
import zuko
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.utils import check_random_state

from skprobae import PAE, TrainingDivergedError

FAST = {
    "standardize": False,  # pixel intensities share one scale
    "n_components": 4,
    "hidden_layer_sizes": (64,),
    "max_epochs": 30,
    "flow_max_epochs": 30,
    "flow_hidden_layer_sizes": (32, 32),
    "refit_on_inliers": False,  # one fit: statistics of every training row (the refit is tested at the end)
    "mask_fraction": 0.0,  # the paper's autoencoder; the default's hidden entries are tested in test_table.py
    "random_state": 0,
}


@pytest.fixture(scope="module")
def images():
    """Digits as pixel intensities in [0, 1], split 75/25."""
    X = load_digits().data / 16
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1350]], X[order[1350:]]


@pytest.fixture(scope="module")
def pae(images):
    return PAE(**FAST).fit(images[0])


def test_score_methods_are_finite_and_consistent(pae, images):
    _, X_test = images
    scores = {}
    for method in ("combined", "latent", "reconstruction", "laplace"):
        model = copy.deepcopy(pae).set_params(score_method=method, map_steps=None)
        scores[method] = model.score_samples(X_test)
        assert scores[method].dtype == np.float64 and np.isfinite(scores[method]).all()
    np.testing.assert_allclose(scores["combined"], scores["latent"] + scores["reconstruction"], rtol=1e-12)


def test_map_refinement_raises_the_joint_density(pae, images):
    _, X_test = images
    at_encoding = copy.deepcopy(pae).set_params(map_steps=0).score_samples(X_test)
    at_map = copy.deepcopy(pae).set_params(map_steps=50).score_samples(X_test)
    assert at_map.mean() > at_encoding.mean()
    assert (at_map >= at_encoding - 1e-6).mean() > 0.95


def test_laplace_matches_dense_autograd_reference(pae, images):
    """Eq. 11 against per-row Jacobians from torch.autograd.functional.jacobian, in the exact (float64) mode."""
    _, X_test = images
    model = copy.deepcopy(pae).set_params(score_method="laplace", map_steps=10, inference_dtype="float64")
    got = model.score_samples(X_test[:3])
    x = torch.tensor(X_test[:3], dtype=torch.float64)
    z = model._map_codes(x, 10)
    prior, sigma = model._prior, torch.tensor(model.sigma_)
    expected = []
    for i in range(3):
        J_g = torch.autograd.functional.jacobian(lambda c: model._decode(c[None])[0], z[i])
        J_b = torch.autograd.functional.jacobian(lambda c: prior.to_base(c[None])[0][0], z[i])
        H = J_b.T @ J_b + (J_g / sigma[:, None]).T @ (J_g / sigma[:, None])
        residual = (x[i] - model._decode(z[i : i + 1])[0]) / sigma
        log_prior = prior.log_prob(z[i : i + 1])[0]
        log_likelihood = -0.5 * residual @ residual - sigma.log().sum() - 32 * math.log(2 * math.pi)
        k = z.shape[1]
        laplace = log_likelihood + log_prior + 0.5 * k * math.log(2 * math.pi) - 0.5 * torch.logdet(H)
        expected.append(float(laplace.detach()))
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    # The default float32 networks agree to float32 accuracy.
    np.testing.assert_allclose(model.set_params(inference_dtype="float32").score_samples(X_test[:3]), got, rtol=1e-4)


def test_laplace_log_determinant_survives_an_ill_conditioned_hessian(pae, images):
    """A decoder steep along one oblique direction and flat in the others, with a tiny noise scale.

    H = J^T J then has a condition number near 1e32: a Cholesky factor of H fails (and a jittered
    one is off by ~40 nats); the QR factor of J keeps the small eigenvalues. Reference: the
    determinant of J^T J in 80-digit arithmetic (mpmath).
    """
    import mpmath

    _, X_test = images
    model = copy.deepcopy(pae).set_params(score_method="laplace", inference_dtype="float64")
    model._sync_modules()  # the float64 networks, as a public call would
    first = model._module.decoder[0]
    with torch.no_grad():
        first.weight.copy_(first.weight[:, :1] * torch.tensor([[1.0, 2.0, 3.0, 4.0]]) / 30**0.5)
    model.sigma_ = np.full(X_test.shape[1], 1e-12)
    z = model._map_codes(torch.tensor(X_test[:3]), 0)
    got = model._laplace_term(z).numpy()
    prior, sigma = model._prior, torch.tensor(model.sigma_)
    mpmath.mp.dps = 80
    for i in range(3):
        J_g = torch.autograd.functional.jacobian(lambda c: model._decode(c[None])[0], z[i]) / sigma[:, None]
        J_b = torch.autograd.functional.jacobian(lambda c: prior.to_base(c[None])[0][0], z[i])
        J = torch.cat([J_g, J_b])
        assert torch.linalg.cholesky_ex(J.T @ J).info != 0  # the case being tested
        exact = mpmath.matrix(J.tolist())
        expected = 2 * math.log(2 * math.pi) - 0.5 * float(mpmath.log(mpmath.det(exact.T * exact)))
        assert got[i] == pytest.approx(expected, abs=1e-8)


def test_laplace_fit_runs_the_map_search_once_per_block(images):
    """The offsets of all four score methods come from one MAP pass (it used to run a second time for 'laplace')."""
    from unittest import mock

    calls = {"map": 0, "laplace": 0}
    map_codes, laplace_term = PAE._map_codes, PAE._laplace_term

    def counted_map(self, x, steps):
        calls["map"] += steps > 0
        return map_codes(self, x, steps)

    def counted_laplace(self, z, observed=None):
        calls["laplace"] += 1
        return laplace_term(self, z, observed)

    params = {**FAST, "max_epochs": 2, "flow_max_epochs": 2, "score_method": "laplace", "map_steps": 3}
    with mock.patch.object(PAE, "_map_codes", counted_map), mock.patch.object(PAE, "_laplace_term", counted_laplace):
        model = PAE(**params).fit(images[0][:300])
    assert calls["laplace"] >= 1 and calls["map"] == calls["laplace"]
    assert set(model.offsets_) == {(m, 3) for m in ("combined", "latent", "reconstruction", "laplace")}


def test_sigma_is_held_out_rms_reconstruction_error(pae, images):
    X_train, _ = images
    order = check_random_state(0).permutation(len(X_train))
    held_out = X_train[np.sort(order[: math.ceil(0.1 * len(X_train))])]
    rms = np.sqrt(((held_out - pae.reconstruct(held_out)) ** 2).mean(0))
    floor = 0.01 * np.sqrt(np.mean(rms**2))
    np.testing.assert_allclose(pae.sigma_, np.maximum(rms, floor))
    _, std = pae.reconstruct(held_out[:2], return_std=True)
    np.testing.assert_array_equal(std, np.tile(pae.sigma_, (2, 1)))


def test_samples_are_typical_and_beat_plain_autoencoder_decoding(pae, images):
    _, X_test = images
    latent = copy.deepcopy(pae).set_params(score_method="latent")
    samples = pae.sample(400, random_state=0)
    assert samples.shape == (400, 64)
    np.testing.assert_array_equal(samples, pae.sample(400, random_state=0))
    plain = pae.inverse_transform(np.random.default_rng(0).normal(size=(400, 4)))
    test_density, sample_density = latent.score(X_test), latent.score(samples)
    assert abs(sample_density - test_density) < 3.0
    assert latent.score(plain) < test_density - 10
    cold = latent.score(pae.sample(400, random_state=0, temperature=0.5))
    assert cold > sample_density


def test_outliers_are_flagged(pae, images):
    _, X_test = images
    noise = np.random.default_rng(1).uniform(size=(40, 64))
    labels = np.r_[np.zeros(len(X_test)), np.ones(40)]
    X_all = np.vstack([X_test, noise])
    assert roc_auc_score(labels, -pae.score_samples(X_all)) > 0.99
    assert (pae.predict(noise) == -1).all()


def test_history_of_both_stages(pae):
    # Each stage trained (its held-out loss fell) within its own epoch budget.
    for history, budget in ((pae.history_, FAST["max_epochs"]), (pae.flow_history_, FAST["flow_max_epochs"])):
        valid = np.asarray(history[:, "valid_loss"])
        assert np.isfinite(valid).all() and 1 <= len(valid) <= budget
        assert valid.min() < valid[0]


def test_reproducible_and_picklable(pae, images):
    X_train, X_test = images
    again = PAE(**FAST).fit(X_train)
    np.testing.assert_array_equal(pae.score_samples(X_test), again.score_samples(X_test))
    restored = pickle.loads(pickle.dumps(pae))
    np.testing.assert_array_equal(restored.score_samples(X_test), pae.score_samples(X_test))
    np.testing.assert_array_equal(restored.sample(3, random_state=1), pae.sample(3, random_state=1))


@pytest.mark.parametrize("n_samples", [1, 2, 5])
def test_too_few_rows_for_the_latent_flow_raise_instead_of_scoring_minus_1e40(images, n_samples):
    # These fits used to succeed silently and score held-out rows near -1e41.
    with pytest.raises(ValueError, match=rf"more of them than n_components=4; got n_samples={n_samples}"):
        PAE(**{**FAST, "max_epochs": 1}).fit(images[0][:n_samples])


@pytest.mark.parametrize(("flow", "expected"), [("auto", "RealNVP"), ("maf", "MAF"), ("nsf", "NSF")])
def test_named_flows(images, flow, expected):
    X_train, _ = images
    model = PAE(**{**FAST, "max_epochs": 3, "flow_max_epochs": 3, "flow": flow}).fit(X_train[:300])
    assert type(model.flow_net_.module_.flow.flow).__name__ == expected
    assert np.isfinite(model.score_samples(X_train[:20])).all()


def test_auto_flow_switches_to_splines_above_32_dimensions():
    from skprobae.flows import build_flow

    assert type(build_flow("auto", 32)).__name__ == "RealNVP"
    assert type(build_flow("auto", 33)).__name__ == "NSF"


def test_user_zuko_flow_is_copied_not_modified(images):
    X_train, _ = images
    user_flow = zuko.flows.MAF(4, transforms=2, hidden_features=(16,))
    before = copy.deepcopy(user_flow.state_dict())
    model = PAE(**{**FAST, "max_epochs": 3, "flow_max_epochs": 3, "flow": user_flow}).fit(X_train[:300])
    assert np.isfinite(model.score_samples(X_train[:20])).all()
    for name, tensor in user_flow.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_user_nflows_flow(images):
    pytest.importorskip("nflows")
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform, MaskedAffineAutoregressiveTransform, ReversePermutation

    X_train, _ = images
    transform = CompositeTransform(
        [MaskedAffineAutoregressiveTransform(features=4, hidden_features=16), ReversePermutation(4)]
    )
    model = PAE(**{**FAST, "max_epochs": 3, "flow_max_epochs": 3, "flow": Flow(transform, StandardNormal([4]))}).fit(
        X_train[:300]
    )
    for method in ("combined", "laplace"):
        assert np.isfinite(model.set_params(score_method=method).score_samples(X_train[:10])).all()
    assert model.sample(5, random_state=0).shape == (5, 64)


def test_conv_pae_on_digit_images(images):
    X_train, X_test = images
    model = PAE(**{**FAST, "max_epochs": 3, "flow_max_epochs": 3, "architecture": "conv", "image_shape": (8, 8)})
    model.fit(X_train[:300])
    assert np.isfinite(model.score_samples(X_test)).all()
    # laplace takes Jacobian columns of the conv decoder with forward-mode AD under no_grad
    for method in ("latent", "reconstruction", "laplace"):
        scores = model.set_params(score_method=method, map_steps=5).score_samples(X_test[:20])
        assert scores.shape == (20,) and np.isfinite(scores).all(), method


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"flow": "glow"}, ValueError, r"flow.*realnvp"),
        ({"score_method": "elbo"}, ValueError, r"score_method.*latent"),
        ({"score_method": "laplace", "map_steps": 0}, ValueError, "map_steps > 0"),
        ({"flow": zuko.flows.MAF(3)}, ValueError, "does not accept 4-dimensional"),
        ({"flow": torch.nn.Linear(4, 4)}, TypeError, "zuko flow or an nflows Flow"),
    ],
)
def test_bad_flow_and_score_settings(images, params, error, match):
    with pytest.raises(error, match=match):
        PAE(**{**FAST, "max_epochs": 1, "flow_max_epochs": 1, **params}).fit(images[0][:50])


def test_zuko_flow_with_non_standard_base_is_rejected(images):
    flow = zuko.flows.MAF(4)
    flow.base = zuko.flows.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.ones(4), torch.ones(4), buffer=True
    )
    with pytest.raises(ValueError, match="standard normal"):
        PAE(**{**FAST, "max_epochs": 1, "flow": flow}).fit(images[0][:50])


def test_diverging_flow_raises_instead_of_nan_scores(images):
    broken = zuko.flows.MAF(4, transforms=1, hidden_features=(8,))
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.fill_(float("nan"))
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDivergedError, match=r"PAE.*epoch 1"):
        PAE(**{**FAST, "max_epochs": 1, "flow": broken}).fit(images[0][:100])


def test_offset_follows_score_method(pae, images):
    X_train, X_test = images
    model = copy.deepcopy(pae)
    for method in ("combined", "latent", "reconstruction"):
        model.set_params(score_method=method)
        training_scores = model.score_samples(X_train)
        assert model.offset_ == pytest.approx(np.percentile(training_scores, 10))
        assert (model.predict(X_train) == -1).mean() == pytest.approx(0.1, abs=0.01)
    model.set_params(score_method="laplace")
    with pytest.raises(ValueError, match="refit with these settings"):
        model.predict(X_test)


def test_custom_networks_and_distribution_options():
    X = load_digits().data[:200] / 16
    model = PAE(decoder=torch.nn.Linear, distribution="maf", distribution_options={"n_point_samples": 3}, **FAST).fit(X)
    assert isinstance(model.net_.module_.decoder, torch.nn.Linear)
    assert model.net_.module_.head.n_point_samples == 3
    assert np.isfinite(model.score_samples(X[:10])).all()


# ------------------------------------------------------------ refit_on_inliers
REFIT_FAST = {
    # the refit against one fit of the paper's autoencoder, which learns the cluster as a mode (hiding entries
    # from the encoder already keeps one fit from learning it here: AUROC 0.995)
    "mask_fraction": 0.0,
    "hidden_layer_sizes": (32,),
    "max_epochs": 30,
    "flow_max_epochs": 30,
    "flow_hidden_layer_sizes": (16, 16),
    "flow_transforms": 4,
    "random_state": 0,
}


@pytest.fixture(scope="module")
def contaminated():
    """Rows near a 3-dimensional subspace of R^6 plus a tight cluster of anomalies (5% of the training rows).

    One fit on them flags part of the cluster (it is learned as a small mode); a
    cluster that the first fit does not flag at all stays masked after the refit.
    """
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 6))
    normal = rng.normal(size=(1000, 3)) @ basis + 0.1 * rng.normal(size=(1000, 6))
    cluster = 4.0 + 0.05 * rng.normal(size=(60, 6))
    return np.vstack([normal[:800], cluster[:40]]), normal[800:], cluster[40:]


def test_refit_on_inliers_flags_a_cluster_of_anomalies_that_one_fit_learns_as_a_mode(contaminated):
    X_train, normal, cluster = contaminated
    labels = np.r_[np.zeros(len(normal)), np.ones(len(cluster))]
    once = PAE(refit_on_inliers=False, **REFIT_FAST).fit(X_train)
    refit = PAE(**REFIT_FAST).fit(X_train)
    auroc = {m: roc_auc_score(labels, -m.score_samples(np.vstack([normal, cluster]))) for m in (once, refit)}
    assert auroc[refit] > 0.97 and auroc[refit] > auroc[once] + 0.03  # measured: 0.991 and 0.937
    assert (refit.predict(cluster) == -1).mean() > (once.predict(cluster) == -1).mean() + 0.2  # 1.0 and 0.6
    assert once.n_refit_outliers_ == 0
    assert refit.n_refit_outliers_ == round(0.1 * len(X_train))
    # offset_ is the contamination quantile of the refitted scores over every training row, trimmed ones included.
    assert (refit.score_samples(X_train) < refit.offset_).mean() == pytest.approx(0.1, abs=1.5 / len(X_train))


def test_refit_on_inliers_is_a_fit_with_weight_zero_on_the_first_fits_outliers(contaminated):
    X_train = contaminated[0]
    weight = np.random.default_rng(3).integers(1, 4, size=len(X_train)).astype(float)
    # contamination * total weight is not a whole number: the quantile lies inside a step of the weighted
    # distribution function, not on an edge where rescaled weights may pick either side
    params = {**REFIT_FAST, "contamination": 0.13}
    # the first fit only ranks the rows: a tenth of the epochs of each stage
    ranking = {**params, "max_epochs": 3, "flow_max_epochs": 3}
    first = PAE(refit_on_inliers=False, **ranking).fit(X_train, sample_weight=weight)
    inlier = first.score_samples(X_train) >= first.offset_
    by_hand = PAE(refit_on_inliers=False, **params).fit(X_train, sample_weight=weight * inlier)
    refit = PAE(**params).fit(X_train, sample_weight=weight)
    assert refit.n_refit_outliers_ == np.count_nonzero(~inlier)
    np.testing.assert_allclose(refit.score_samples(X_train), by_hand.score_samples(X_train), rtol=1e-6, atol=1e-6)
    # The offset is the user-weighted quantile over all rows, not the trimmed fit's own: integer weights, so
    # the quantile of the repeated rows' scores.
    expected = np.quantile(np.repeat(refit.score_samples(X_train), weight.astype(int)), 0.13, method="inverted_cdf")
    assert refit.offset_ == pytest.approx(expected, abs=1e-6)
    assert refit.offset_ != pytest.approx(by_hand.offset_, rel=1e-6)


def test_refit_on_inliers_leaves_continuations_and_imputer_alone(contaminated):
    X_train = contaminated[0]
    model = PAE(**{**REFIT_FAST, "max_epochs": 2, "flow_max_epochs": 2}).partial_fit(X_train)
    assert model.partial_fit(X_train).n_refit_outliers_ == 0
    warm = PAE(**{**REFIT_FAST, "max_epochs": 2, "flow_max_epochs": 2}, warm_start=True).fit(X_train)
    assert warm.n_refit_outliers_ > 0 and warm.fit(X_train).n_refit_outliers_ == 0


def test_refit_on_inliers_with_too_few_inliers_warns_and_fits_every_row():
    X = np.random.default_rng(0).normal(size=(8, 5))
    params = {**REFIT_FAST, "n_components": 4, "max_epochs": 2, "flow_max_epochs": 2, "contamination": 0.5}
    with pytest.warns(UserWarning, match=r"refit_on_inliers left 4 of 8 training rows, too few for n_components_=4"):
        model = PAE(**params).fit(X)
    once = PAE(**params, refit_on_inliers=False).fit(X)
    assert model.n_refit_outliers_ == 0
    # the model is a full fit on every row, not the short ranking fit
    assert model.n_iter_ == once.n_iter_ == 2
    np.testing.assert_allclose(model.score_samples(X), once.score_samples(X), rtol=1e-6)


def test_the_ranking_fit_of_a_large_table_trains_on_a_subset(monkeypatch, contaminated):
    # the first fit of refit_on_inliers only ranks the rows: on a large table it trains on a seeded subset (as
    # FastMCD starts from subsets), the refit on every training row; both stages of each fit see the same rows
    from skprobae import _base

    monkeypatch.setattr(_base, "RANKING_MAX_ROWS", 100)
    X_train = contaminated[0]
    trained_rows = []
    train_stage = PAE._train_stage

    def recording(self, build, X, split, **kwargs):
        trained_rows.append(len(split.train))
        return train_stage(self, build, X, split, **kwargs)

    monkeypatch.setattr(PAE, "_train_stage", recording)
    params = {**REFIT_FAST, "max_epochs": 10, "flow_max_epochs": 10}
    model = PAE(**params).fit(X_train)
    n_train = len(X_train) - math.ceil(0.1 * len(X_train))
    assert trained_rows == [100, 100, n_train, n_train]
    assert model.n_refit_outliers_ == round(0.1 * len(X_train))  # ranked: every training row was scored
    again = PAE(**params).fit(X_train)
    np.testing.assert_allclose(again.score_samples(X_train), model.score_samples(X_train), rtol=1e-6)
