"""The joint likelihood of mixed tables against direct computations with scipy."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import log_softmax

from skprobae.distributions import make_distribution
from skprobae.nn._table import TableHead, TableInput, TableLayout


def _layout(missing_indicators=False):
    # columns: 0 continuous, 1 binary, 2 continuous, 3 three categories
    return TableLayout(
        n_features=4,
        categorical=np.array([1, 3]),
        n_categories=(2, 3),
        loc=np.array([1.0, 0.0, -2.0, 0.0]),
        scale=np.array([2.0, 1.0, 0.5, 1.0]),
        missing_indicators=missing_indicators,
    )


def _head_and_params(family="normal_diag", seed=0):
    torch.manual_seed(seed)
    head = TableHead(make_distribution(family, 2), _layout()).double()
    params = torch.randn(5, head.n_params, dtype=torch.float64)
    return head, params


def test_joint_log_likelihood_of_a_fixed_decoder_matches_scipy():
    head, params = _head_and_params()
    x = np.array(
        [[0.5, 1, -1.0, 2], [3.0, 0, -2.5, 0], [np.nan, 1, -1.5, 1], [1.0, np.nan, np.nan, 2], [2.0, 0, 0.0, np.nan]]
    )
    got = head.log_prob(params, torch.from_numpy(x)).numpy()
    p = params.numpy()
    loc, raw_scale = p[:, :2], p[:, 2:4]
    scale_std = np.logaddexp(0, raw_scale) + 1e-6
    bernoulli_logit, logits = p[:, 4], p[:, 5:8]
    data_loc, data_scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    expected = np.zeros(5)
    for i in range(5):
        for c, j in enumerate([0, 2]):
            if not np.isnan(x[i, j]):  # N(loc, scale) in standardized units, mapped to the data's units
                mean, sd = data_loc[c] + data_scale[c] * loc[i, c], data_scale[c] * scale_std[i, c]
                expected[i] += stats.norm.logpdf(x[i, j], mean, sd)
        if not np.isnan(x[i, 1]):
            p1 = 1 / (1 + np.exp(-bernoulli_logit[i]))
            expected[i] += np.log(p1 if x[i, 1] == 1 else 1 - p1)
        if not np.isnan(x[i, 3]):
            expected[i] += log_softmax(logits[i])[int(x[i, 3])]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("family", ["normal_full", "t_full", "t_diag", "normal"])
def test_missing_entries_score_the_exact_marginal_of_the_observed_block(family):
    torch.manual_seed(1)
    head = make_distribution(family, 4).double()
    params = torch.randn(3, head.n_params, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64)
    observed = torch.tensor([[True, False, True, True], [False, False, True, False], [True] * 4])
    got = head.log_prob_observed(params, x, observed).numpy()
    for i in range(3):
        dist = head.distribution(params[i : i + 1])
        o = observed[i].numpy()
        if family in ("normal_full", "normal"):
            mean = dist.mean[0].numpy()
            cov = dist.covariance_matrix[0].numpy() if family == "normal_full" else np.eye(4)
            want = stats.multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[i].numpy()[o])
        else:
            L = dist.scale_tril[0].numpy() if dist.scale_tril is not None else np.diag(dist.scale_diag[0].numpy())
            shape = L @ L.T
            want = stats.multivariate_t(dist.loc[0].numpy()[o], shape[np.ix_(o, o)], df=float(dist.df[0])).logpdf(
                x[i].numpy()[o]
            )
        np.testing.assert_allclose(got[i], want, rtol=1e-9)


def test_a_mixture_marginalises_each_component():
    torch.manual_seed(2)
    head = make_distribution("normal_diag", 3, n_mixtures=2).double()
    params = torch.randn(2, head.n_params, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    observed = torch.tensor([[True, False, True], [True, True, True]])
    got = head.log_prob_observed(params, x, observed)
    sub = make_distribution("normal_diag", 2, n_mixtures=2).double()
    # the first row's marginal is the 2-feature mixture over columns 0 and 2
    logits, comp = params[0, :2], params[0, 2:].reshape(2, 6)
    kept = torch.cat([comp[:, [0, 2]], comp[:, [3, 5]]], dim=-1)
    want = sub.log_prob(torch.cat([logits, kept.flatten()])[None], x[0, [0, 2]][None])
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(got[1], head.log_prob(params[1:], x[1:])[0], rtol=1e-12, atol=0)


def test_families_without_a_marginal_say_so():
    head = make_distribution("maf", 3)
    params = torch.randn(1, head.n_params)
    with pytest.raises(ValueError, match="no closed-form marginal"):
        head.log_prob_observed(params, torch.zeros(1, 3), torch.tensor([[True, False, True]]))
    assert not head.marginalizes and make_distribution("t_full", 3).marginalizes


def test_table_input_one_hots_categories_and_flags_missing_entries():
    layer = TableInput(_layout(missing_indicators=True))
    x = torch.tensor([[3.0, 1.0, -2.0, 2.0], [np.nan, 0.0, -1.5, np.nan]])
    out = layer(x)
    assert out.shape == (2, layer.n_outputs) == (2, 2 + 5 + 4)
    np.testing.assert_allclose(out[0, :2].numpy(), [1.0, 0.0])  # (3 - 1) / 2, (-2 + 2) / 0.5
    np.testing.assert_array_equal(out[0, 2:7].numpy(), [0, 1, 0, 0, 1])
    np.testing.assert_allclose(out[1, :2].numpy(), [0.0, 1.0])  # missing -> 0, the standardized mean
    np.testing.assert_array_equal(out[1, 2:7].numpy(), [1, 0, 0, 0, 0])  # missing category: no one-hot bit
    np.testing.assert_array_equal(out[1, 7:].numpy(), [1, 0, 0, 1])


def test_point_estimate_is_the_most_probable_category_and_the_unstandardized_mean():
    head, params = _head_and_params("normal")
    point = head.point_estimate(params).numpy()
    p = params.numpy()
    np.testing.assert_allclose(point[:, 0], 1.0 + 2.0 * p[:, 0])
    np.testing.assert_allclose(point[:, 2], -2.0 + 0.5 * p[:, 1])
    np.testing.assert_array_equal(point[:, 1], (p[:, 2] > 0).astype(float))
    np.testing.assert_array_equal(point[:, 3], p[:, 3:6].argmax(1))
    probabilities = head.category_probabilities(params)
    np.testing.assert_allclose([q.sum(-1).numpy() for q in probabilities], 1.0)
    draws = head.sample_values(params, 7)
    assert draws.shape == (7, 5, 4) and set(np.unique(draws[..., 3].numpy())) <= {0.0, 1.0, 2.0}


def test_logit_fisher_is_the_hessian_of_the_categorical_negative_log_likelihood():
    head, params = _head_and_params()
    x = torch.tensor([[0.5, 1, -1.0, 2], [3.0, np.nan, -2.5, 0], [1.0, 0, 0.0, np.nan]], dtype=torch.float64)
    logits = head.category_logits(params[:3])
    fisher = head.logits_fisher(logits, x)
    for i in range(3):
        hessian = torch.autograd.functional.hessian(lambda row, i=i: -head.logits_log_prob(row, x[i]), logits[i])
        torch.testing.assert_close(fisher[i], hessian, rtol=1e-10, atol=1e-12)
    assert (fisher[1, 0] == 0).all() and (fisher[2, 1:, 1:] == 0).all()  # missing entries carry no information
    assert (fisher[0, 0, 1:] == 0).all()  # block diagonal over the columns


@pytest.mark.parametrize("family", ["normal_diag", "t_diag", "maf"])
def test_point_and_variance_is_the_point_estimate_and_the_variance_from_one_pass(family, monkeypatch):
    head, params = _head_and_params(family)
    calls = []
    if family == "maf":  # the flow family draws samples for both: one set of draws, not two
        moments = head.continuous.moments
        monkeypatch.setattr(head.continuous, "moments", lambda p: calls.append(1) or moments(p))
    with torch.no_grad():  # inference, as reconstruct runs it (the flow has parameters)
        point, variance = head.point_estimate(params), head.variance(params)
        calls.clear()
        together = head.point_and_variance(params)
    # same seeded draws for maf, same arithmetic for the others: equal by construction (NaN for categories)
    np.testing.assert_array_equal(together[0].numpy(), point.numpy())
    np.testing.assert_array_equal(together[1].numpy(), variance.numpy())
    assert np.isnan(variance[:, [1, 3]].numpy()).all()
    assert len(calls) == (1 if family == "maf" else 0)


def test_table_input_hides_observed_entries_only_in_training():
    layout = TableLayout(
        n_features=3, categorical=np.array([], dtype=int), n_categories=(), loc=np.zeros(3), scale=np.ones(3),
        missing_indicators=True, mask_fraction=0.3,
    )  # fmt: skip
    inputs = TableInput(layout)
    x = torch.ones(20_000, 3)
    x[:, 2] = torch.nan  # already missing: stays missing, never counted as hidden
    torch.manual_seed(0)
    out = inputs.train()(x)
    hidden = out[:, 3:5]  # the indicators of the two observed columns
    assert abs(hidden.mean().item() - 0.3) < 0.01
    torch.testing.assert_close(out[:, :2], 1 - hidden, msg="a hidden entry reads 0, an observed one its value")
    np.testing.assert_array_equal(out[:, 5].numpy(), 1.0)
    np.testing.assert_array_equal(inputs.eval()(x)[:, 3:].numpy(), [[0.0, 0.0, 1.0]] * 20_000)
