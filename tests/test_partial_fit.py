"""partial_fit (data chunk by chunk, dask-ml's Incremental) and warm_start."""

import numpy as np
import pytest
import torch

from skprobae import PAE, VAE
from skprobae._testing import AUTOENCODERS, small
from skprobae.nn import VariationalModule


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(1500, 2))
    return (latent @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(1500, 6))).astype(np.float32)


def _adam_steps(net) -> int:
    return max(int(state["step"]) for state in net.optimizer_.state.values())


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_partial_fit_trains_chunk_by_chunk_and_keeps_the_optimizer(cls, data):
    model = small(cls).set_params(learning_rate=1e-2)
    train, test = data[:1000], data[1000:]
    model.partial_fit(train[:200])
    steps = _adam_steps(model.net_)
    for chunk in np.array_split(train[200:], 4):
        model.partial_fit(chunk)
    assert len(model.history_) == model.n_iter_ == 5  # one epoch per call
    if cls is PAE:
        assert len(model.flow_history_) == 5  # and one flow epoch on each chunk's codes
    assert model.n_samples_seen_ == 1000
    assert _adam_steps(model.net_) > steps  # the same optimizer, its step count running on
    # Training went on from where it was: back on the first chunk, its loss is below the first call's.
    again = model.partial_fit(train[:200]).history_[-1, "train_loss"]
    assert again < model.history_[0, "train_loss"]
    assert np.isfinite(model.score_samples(test)).all() and np.isfinite(model.offset_)


def test_each_partial_fit_call_draws_new_training_noise(data, monkeypatch):
    # With an int random_state every call derives the same stage seed; the noise must still move on, or a stream of
    # one-batch chunks would train a VAE on one fixed posterior draw.
    draws = []
    sample = VariationalModule.posterior_sample

    def recording(self, encoded, noise):
        if self.training:
            draws.append(noise.detach().clone())
        return sample(self, encoded, noise)

    monkeypatch.setattr(VariationalModule, "posterior_sample", recording)

    def stream():
        draws.clear()
        model = small(VAE, batch_size=50)
        for _ in range(3):
            model.partial_fit(data[:50])  # one batch per call
        return list(draws)

    first, again = stream(), stream()
    assert len(first) == 3
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    for a, b in zip(first, again, strict=True):  # and the stream repeats with the same random_state
        assert torch.equal(a, b)


def test_pae_accumulates_feature_ranges_over_chunks(data):
    model = small(PAE)
    chunks = np.array_split(data[:900], 3)
    for chunk in chunks:
        model.partial_fit(chunk)
    np.testing.assert_allclose(model.feature_mean_, data[:900].mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-9)
    low, high = data[:900].min(axis=0), data[:900].max(axis=0)
    margin = 0.1 * (high - low)
    np.testing.assert_allclose(model.feature_bounds_, np.stack([low - margin, high + margin]), rtol=1e-5)


def test_partial_fit_bad_input(data):
    model = small(PAE).partial_fit(data[:300])
    with pytest.raises(ValueError, match="X has 5 features, but PAE is expecting 6 features"):
        model.partial_fit(data[:50, :5])
    with pytest.raises(ValueError, match=r"cannot continue training after set_params changed n_components=2 -> 3"):
        model.set_params(n_components=3).partial_fit(data[:50])
    model.set_params(n_components=2)
    with pytest.raises(ValueError, match=r"changed image_shape=None -> \(2, 3\)"):
        model.set_params(image_shape=(2, 3)).partial_fit(data[:50])
    model.set_params(image_shape=None)
    with pytest.raises(ValueError, match="first partial_fit call needs at least 2 rows"):
        small(PAE).partial_fit(data[:1])
    with pytest.raises(ValueError, match="more of them than n_components=2; got n_samples=2"):
        small(PAE).partial_fit(data[:2])


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_a_one_row_chunk_trains_and_keeps_the_statistics(cls, data):
    model = small(cls).partial_fit(data[:300])
    offset, epochs = model.offset_, len(model.history_)
    model.partial_fit(data[300:301])
    assert len(model.history_) == epochs + 1 and model.offset_ == offset and model.n_samples_seen_ == 301


def test_partial_fit_after_a_fit_continues_it_and_refuses_changed_parameters(data):
    model = small(PAE).fit(data[:300])
    epochs = len(model.history_)
    model.partial_fit(data[300:600])
    assert len(model.history_) == epochs + 1
    with pytest.raises(ValueError, match="changed hidden_layer_sizes"):
        model.set_params(hidden_layer_sizes=(4,)).partial_fit(data[:50])


def test_partial_fit_takes_a_new_device_and_precision(data):
    model = small(PAE).fit(data[:300])
    steps = _adam_steps(model.net_)
    model.set_params(device="cpu", mixed_precision="bf16").partial_fit(data[300:600])
    assert model.net_.mixed_precision is not None and _adam_steps(model.net_) > steps
    model.set_params(mixed_precision=None).partial_fit(data[300:600])
    assert model.net_.mixed_precision is None and np.isfinite(model.score_samples(data[600:700])).all()


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda cls: cls.__name__)
def test_warm_start_continues_from_the_fitted_weights(cls, data):
    params = {"max_epochs": 3, "n_iter_no_change": None}
    if "refit_on_inliers" in cls().get_params():
        params["refit_on_inliers"] = False  # the continuation trains on every row: compare with a fit on every row
    cold = small(cls).set_params(**params).fit(data[:600])
    warm = small(cls).set_params(warm_start=True, **params).fit(data[:600])
    first_losses = list(warm.history_[:, "train_loss"])
    steps = _adam_steps(warm.net_)
    warm.fit(data[:600])
    assert len(warm.history_) == 6 and _adam_steps(warm.net_) > steps
    # The second fit starts where the first ended, not from a new initialization.
    assert warm.history_[3, "train_loss"] < first_losses[0]
    np.testing.assert_allclose(first_losses, cold.history_[:, "train_loss"], rtol=1e-5)  # same first fit
    refit = small(cls).set_params(**params).fit(data[:600])  # warm_start=False starts over
    assert len(refit.history_) == 3


def test_warm_start_takes_a_new_learning_rate(data):
    model = small(PAE).set_params(warm_start=True).fit(data[:300])
    model.set_params(learning_rate=1e-5).fit(data[:300])
    assert {group["lr"] for group in model.net_.optimizer_.param_groups} == {1e-5}


@pytest.mark.slow
def test_dask_ml_incremental_on_a_memory_mapped_dask_array(data, tmp_path):
    pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from skprobae.parallel import from_memmap

    path = tmp_path / "rows.f32"
    np.tile(data[:1000], (20, 1)).tofile(path)  # 20,000 rows
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(20_000, 6))
    X = from_memmap(mapped, 4_000)  # each block read by its own task (dask's from_array copies a memmap whole)
    incremental = wrappers.Incremental(small(PAE), scoring=None).fit(X)
    model = incremental.estimator_
    assert model.n_samples_seen_ == 20_000 and len(model.history_) == 5  # one epoch per dask block
    scores = model.score_samples(data[1000:])
    assert np.isfinite(scores).all()
    in_memory = small(PAE).set_params(max_epochs=5, flow_max_epochs=5).fit(data[:1000])
    # Five chunks of 4,000 rows (each the 1,000 rows four times) train at least as well as five epochs
    # on the 1,000 rows in memory.
    assert scores.mean() > in_memory.score(data[1000:])
    # Incremental is a ParallelPostFit: predict over the dask array, block by block, as in memory.
    np.testing.assert_array_equal(incremental.predict(X[:100]).compute(), model.predict(mapped[:100]))


def test_a_saved_model_continues_training_after_load(data, tmp_path):
    import skprobae

    model = small(PAE).partial_fit(data[:300])
    skprobae.save(model, tmp_path / "model.skprobae")
    loaded = skprobae.load(tmp_path / "model.skprobae")
    loaded.partial_fit(data[300:600])  # a fresh optimizer state: save keeps the weights, not Adam's moments
    assert len(loaded.history_) == 2 and loaded.n_samples_seen_ == 600
    with pytest.raises(ValueError, match="changed n_components"):
        loaded.set_params(n_components=3).partial_fit(data[:50])
