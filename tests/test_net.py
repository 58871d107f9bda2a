"""Training machinery: divergence recovery, clipping, early stopping, mixed precision."""

import numpy as np
import pytest
import torch
from sklearn.utils import check_random_state

import skprobae.distributions as distributions
from skprobae import ProbabilisticAutoencoder, TrainingDivergedError
from skprobae._net import ClipGradNorm, clone_state
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
    # The first loss evaluation is the cost probe before training; the next two are training batches.
    register("nan_once", n_bad=3)
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
        ProbabilisticAutoencoder(distribution="normal", standardize=False, **FAST).fit(X)


class _Net:
    pass


def test_clip_grad_norm_rescales_only_above_the_limit():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((3,), 3.0), torch.full((4,), 4.0)  # global norm sqrt(27 + 64)
    ClipGradNorm(max_norm=100.0).on_grad_computed(_Net(), [("a", a), ("b", b)])
    assert torch.equal(a.grad, torch.full((3,), 3.0))
    ClipGradNorm(max_norm=1.0).on_grad_computed(_Net(), [("a", a), ("b", b)])
    total = torch.cat([a.grad, b.grad]).norm()
    assert total == pytest.approx(1.0, rel=1e-5)


def test_clone_state_copies_every_tensor():
    state = {"a": torch.ones(2), "nested": {"b": [torch.zeros(1), 3]}}
    copy = clone_state(state)
    state["a"] += 1
    state["nested"]["b"][0] += 1
    assert torch.equal(copy["a"], torch.ones(2)) and torch.equal(copy["nested"]["b"][0], torch.zeros(1))
    assert copy["nested"]["b"][1] == 3


def test_early_stopping_keeps_the_best_epoch(digits):
    X, _ = digits
    X = X[:300]
    model = ProbabilisticAutoencoder(**{**FAST, "max_epochs": 300, "n_iter_no_change": 3}).fit(X)
    valid = model.history_[:, "valid_loss"]
    keep = dict(model.net_.callbacks_)["keep_best"]
    assert keep.stopped_early_ and len(valid) < 300
    best = keep.best_epoch_
    assert valid[best - 1] == min(valid) and len(valid) - best == 3
    # The kept weights are the best epoch's: the validation loss recomputed now equals it.
    valid_rows = np.sort(check_random_state(0).permutation(300)[:30])
    x = torch.tensor(X[valid_rows], dtype=torch.float32)
    with torch.no_grad():
        recomputed = model.net_.module_.loss(model.net_.module_(x), x)
    assert float(recomputed) == pytest.approx(valid[best - 1], rel=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_runs_and_scores_in_float64(digits, precision):
    X, _ = digits
    params = {**FAST, "mixed_precision": precision, "max_epochs": 3}
    if precision == "fp16":  # emulated on a CPU
        with pytest.warns(UserWarning, match="emulated"):
            model = ProbabilisticAutoencoder(**params).fit(X[:300])
    else:
        model = ProbabilisticAutoencoder(**params).fit(X[:300])
    scores = model.score_samples(X[:50])
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert np.isfinite(model.history_[:, "train_loss"]).all()
    assert (model.net_.scaler_ is not None) == (precision == "fp16")


def test_unknown_precision_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"bf16.*fp16|fp16.*bf16"):
        ProbabilisticAutoencoder(**{**FAST, "mixed_precision": "fp8"}).fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"float32.*float64|float64.*float32"):
        ProbabilisticAutoencoder(**{**FAST, "inference_dtype": "half"}).fit(np.zeros((10, 2)))


class OutOfMemoryAfter(torch.nn.Module):
    """A decoder that raises the error a GPU raises when it runs out of memory, from its third training call on."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_out)
        self.calls = 0

    def forward(self, z):
        if self.training:
            self.calls += 1
            if self.calls > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.linear(z)


def test_running_out_of_device_memory_names_the_batch_size_and_a_remedy():
    X = np.random.default_rng(0).normal(size=(300, 5))
    model = ProbabilisticAutoencoder(decoder=OutOfMemoryAfter, batch_size=64, **FAST)
    with pytest.raises(torch.OutOfMemoryError, match=r"training the autoencoder.*batch size \(now 64\).*memmap"):
        model.fit(X)
