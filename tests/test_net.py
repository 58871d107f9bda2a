"""Training machinery: divergence recovery, batching."""

import numpy as np
import pytest
import torch

import skprobae.distributions as distributions
from skprobae import ProbabilisticAutoencoder, TrainingDivergedError
from skprobae._net import TensorBatches
from skprobae.distributions import DiagonalNormal

FAST = {"n_components": 2, "hidden_layer_sizes": (16,), "max_epochs": 4, "random_state": 0}


class NaNLossFor(DiagonalNormal):
    """A family whose training loss is NaN for its first ``n_bad`` batches."""

    def __init__(self, n_features, n_bad):
        super().__init__(n_features)
        self.n_bad = n_bad
        self.calls = 0

    def loss(self, params, x):
        self.calls += 1
        loss = super().loss(params, x)
        return loss * float("nan") if self.calls <= self.n_bad else loss


@pytest.fixture
def register(monkeypatch):
    def _register(name, n_bad):
        monkeypatch.setitem(distributions._REGISTRY, name, lambda n_features, **_: NaNLossFor(n_features, n_bad))

    return _register


def test_nan_epoch_is_rerun_with_lower_learning_rate(register):
    register("nan_once", n_bad=2)
    X = np.random.default_rng(0).normal(size=(300, 5))
    with pytest.warns(
        RuntimeWarning, match=r"NaN or infinite at epoch 1; restored .* lowered the learning rate to 1\.0e-04"
    ):
        model = ProbabilisticAutoencoder(distribution="nan_once", learning_rate=1e-3, **FAST).fit(X)
    assert model.history_[0, "lr_reduced_to"] == pytest.approx(1e-4)
    assert np.isfinite(model.history_[:, "train_loss"]).all()
    assert model.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert np.isfinite(model.score_samples(X)).all()


def test_persistent_nan_raises_naming_epoch_and_remedy(register):
    register("always_nan", n_bad=10**9)
    X = np.random.default_rng(0).normal(size=(50, 5))
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDivergedError, match=r"epoch 1.*StandardScaler"):
        ProbabilisticAutoencoder(distribution="always_nan", **FAST).fit(X)


def test_overflowing_data_raises_instead_of_returning_nan_scores():
    X = np.random.default_rng(0).normal(size=(40, 3)) * 1e25  # squares overflow float32
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDivergedError, match="epoch 1"):
        ProbabilisticAutoencoder(distribution="normal", **FAST).fit(X)


class _Data:
    def __init__(self, X):
        self.X = X


def test_tensor_batches_cover_every_row_once():
    X = torch.arange(10.0).unsqueeze(1)
    batches = list(TensorBatches(_Data(X), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b, _ in batches] == [4, 4, 2]
    assert sorted(torch.cat([b for b, _ in batches]).squeeze(1).tolist()) == list(range(10))
    ordered = torch.cat([b for b, _ in TensorBatches(_Data(X), batch_size=3)])
    assert torch.equal(ordered, X)


class _Net:
    pass


def test_clip_grad_norm_rescales_only_above_the_limit():
    from skprobae._net import ClipGradNorm

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((3,), 3.0), torch.full((4,), 4.0)  # global norm sqrt(27 + 64)
    ClipGradNorm(max_norm=100.0).on_grad_computed(_Net(), [("a", a), ("b", b)])
    assert torch.equal(a.grad, torch.full((3,), 3.0))
    ClipGradNorm(max_norm=1.0).on_grad_computed(_Net(), [("a", a), ("b", b)])
    total = torch.cat([a.grad, b.grad]).norm()
    assert total == pytest.approx(1.0, rel=1e-5)
