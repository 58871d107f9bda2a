"""skprobae.save / skprobae.load: every public estimator round-trips exactly, without pickle."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import zuko
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch import nn

import skprobae
from skprobae import AEF, PAE, VAE, PAEImputer, ProbabilisticAutoencoder
from skprobae import _version as version_module
from skprobae._testing import PUBLIC_ESTIMATORS, TinyNetwork, small
from skprobae.exceptions import InconsistentVersionWarning
from skprobae.persistence import FORMAT_VERSION, _read_meta, _rewrite_meta


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(120, 2))
    return latent @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(120, 6))


@pytest.fixture(scope="module")
def missing(data):
    return np.where(np.random.default_rng(1).random(data.shape) < 0.15, np.nan, data)


def fit(cls, data, missing, **params):
    return small(cls, **params).fit(missing if cls is PAEImputer else data)


def outputs(model, X, X_missing) -> dict:
    """Every output of ``model`` on ``X`` (its randomized ones seeded)."""
    if isinstance(model, PAEImputer):
        filled, std = model.transform(X_missing, return_std=True)
        return {"transform": filled, "transform_std": std}
    point, std = model.reconstruct(X, return_std=True)
    result = {
        "transform": model.transform(X),
        "inverse_transform": model.inverse_transform(model.transform(X[:5])),
        "score_samples": model.score_samples(X),
        "decision_function": model.decision_function(X),
        "predict": model.predict(X),
        "reconstruct": point,
        "reconstruct_std": std,
        "sample": model.sample(5, random_state=0),
    }
    if hasattr(model, "sample_reconstructions"):
        result["sample_reconstructions"] = model.sample_reconstructions(X[:3], n_samples=2, random_state=0)
    if isinstance(model, PAE):
        result["impute"] = model.impute(X_missing[:6], n_restarts=2, n_samples=10, n_steps=5)
    return result


def assert_same_outputs(loaded, model, X, X_missing):
    expected, got = outputs(model, X, X_missing), outputs(loaded, X, X_missing)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def round_trip(model, tmp_path, **load_params):
    path = tmp_path / "model.skprobae"
    skprobae.save(model, path)
    return skprobae.load(path, **load_params)


@pytest.mark.parametrize("cls", PUBLIC_ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_public_estimator_round_trips_with_identical_outputs(cls, data, missing, tmp_path):
    model = fit(cls, data, missing)
    torch.manual_seed(0)
    loaded = round_trip(model, tmp_path)
    drawn_after_load = torch.rand(1)
    torch.manual_seed(0)
    assert drawn_after_load == torch.rand(1), "load must not move the caller's torch RNG"
    assert type(loaded) is cls
    assert loaded.get_params() == model.get_params()
    assert vars(loaded).keys() == vars(model).keys()
    check_is_fitted(loaded)
    nested = (loaded.pae_, model.pae_) if cls is PAEImputer else (loaded, model)
    for name in ("history_", "flow_history_"):
        if hasattr(nested[1], name):
            assert list(getattr(nested[0], name)) == list(getattr(nested[1], name))
            assert getattr(nested[0], name) is getattr(nested[0], name.replace("history_", "net_")).history
    assert_same_outputs(loaded, model, data, missing)


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (ProbabilisticAutoencoder, {"distribution": "t_full", "n_mixtures": 2, "inference_dtype": "float64"}),
        (ProbabilisticAutoencoder, {"distribution": "maf", "distribution_options": {"n_point_samples": 3}}),
        (PAE, {"flow": "maf", "score_method": "laplace", "map_steps": 3}),
        (PAE, {"flow": "nsf", "validation_fraction": 0.0}),
        (AEF, {"partition": "random", "logit_lambda": 0.05}),
        (VAE, {"posterior_flow": "iaf", "prior_flow": "maf"}),
    ],
    ids=["vanilla-t_full-mixture-float64", "vanilla-maf", "pae-maf-laplace", "pae-nsf", "aef-random-logit", "vae-iaf"],
)
def test_model_variants_round_trip(cls, params, data, missing, tmp_path):
    if params.get("logit_lambda"):  # the logit preprocessing needs data in [0, 1]
        data, missing = 1 / (1 + np.exp(-data)), 1 / (1 + np.exp(-missing))
    model = fit(cls, data, missing, **params)
    assert_same_outputs(round_trip(model, tmp_path), model, data, missing)


def test_round_trip_across_a_fresh_process(data, missing, tmp_path):
    # The child only scores: it never builds an optimizer, so it never imports torch._dynamo (about a second).
    model = fit(PAE, data, missing)
    skprobae.save(model, tmp_path / "model.skprobae")
    np.save(tmp_path / "X.npy", data)
    child = textwrap.dedent(
        f"""
        import sys, numpy as np, skprobae
        model = skprobae.load({str(tmp_path / "model.skprobae")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, np.stack([
            model.score_samples(X), model.decision_function(X), model.transform(X)[:, 0],
            model.reconstruct(X)[:, 0], np.resize(model.sample(len(X), random_state=3)[:, 0], len(X)),
        ]))
        print("torch._dynamo" in sys.modules)
        """
    )
    checkout = str(Path(skprobae.__file__).parents[1])  # the child imports this skprobae, not an installed one
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": checkout}
    run = subprocess.run(
        [sys.executable, "-c", child], check=True, env=env, cwd=tmp_path, timeout=120, capture_output=True, text=True
    )
    assert run.stdout.strip() == "False"
    expected = np.stack(
        [
            model.score_samples(data),
            model.decision_function(data),
            model.transform(data)[:, 0],
            model.reconstruct(data)[:, 0],
            model.sample(len(data), random_state=3)[:, 0],
        ]
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


@pytest.mark.parametrize("cls", [PAE, VAE])
def test_a_loaded_model_trains_on_and_pickles(cls, data, missing, tmp_path, capsys):
    # load builds no optimizer; warm_start builds a fresh one (saved files hold no optimizer state)
    model = fit(cls, data, missing)
    skprobae.save(model, tmp_path / "model.skprobae")
    loaded = skprobae.load(tmp_path / "model.skprobae")
    epochs = len(loaded.net_.history)
    capsys.readouterr()
    loaded.set_params(warm_start=True, max_epochs=2, verbose=1).fit(data)
    printed = capsys.readouterr()
    assert "kept" in printed.out + printed.err
    assert "Re-initializing" not in printed.out + printed.err  # the optimizer's first build, not a re-build
    loaded.set_params(verbose=0)
    assert len(loaded.net_.history) == epochs + 2
    assert np.isfinite(loaded.score_samples(data)).all()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loaded)).score_samples(data), loaded.score_samples(data))
    fresh = skprobae.load(tmp_path / "model.skprobae")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fresh)).score_samples(data), model.score_samples(data))


def test_feature_names_and_output_settings_round_trip(data, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(data, columns=[f"col{i}" for i in range(data.shape[1])])
    model = small(ProbabilisticAutoencoder).fit(frame).set_output(transform="pandas")
    loaded = round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    pd.testing.assert_frame_equal(loaded.transform(frame), model.transform(frame))


def test_custom_network_classes_are_stored_by_import_path(data, missing, tmp_path):
    model = small(ProbabilisticAutoencoder, encoder=TinyNetwork, decoder=TinyNetwork, encoder_kwargs={"hidden": 4}).fit(
        data
    )
    path = tmp_path / "model.skprobae"
    model.save(path)
    params = _read_meta(path)["estimator"]["params"]
    assert params["encoder"] == {"__class__": "skprobae._testing:TinyNetwork"}
    loaded = skprobae.load(path)
    assert loaded.encoder is TinyNetwork and loaded.encoder_kwargs == {"hidden": 4}
    assert_same_outputs(loaded, model, data, missing)


def test_classes_that_do_not_import_by_their_path_are_refused(tmp_path):
    class LocalNetwork(TinyNetwork):
        pass

    with pytest.raises(ValueError, match=r"encoder.*inside a function.*joblib"):
        skprobae.save(VAE(encoder=LocalNetwork), tmp_path / "model.skprobae")
    LocalNetwork.__module__, LocalNetwork.__qualname__ = "__main__", "LocalNetwork"
    with pytest.raises(ValueError, match=r"decoder.*__main__"):
        skprobae.save(VAE(decoder=LocalNetwork), tmp_path / "model.skprobae")
    assert not list(tmp_path.iterdir()), "a refused save leaves no file behind"


def test_objects_that_only_code_describes_are_refused(data, tmp_path):
    path = tmp_path / "model.skprobae"
    with pytest.raises(TypeError, match=r"'encoder'.*Linear instance.*pass the class.*_kwargs.*joblib"):
        skprobae.save(ProbabilisticAutoencoder(encoder=nn.Linear(6, 8)), path)
    with pytest.raises(TypeError, match=r"'flow'.*instance.*pass one of the parameter's names.*joblib"):
        skprobae.save(PAE(flow=zuko.flows.MAF(2, transforms=1, hidden_features=(4,))), path)
    with pytest.raises(TypeError, match=r"'random_state'.*RandomState.*int seed"):
        skprobae.save(VAE(random_state=np.random.RandomState(0)), path)
    with pytest.raises(TypeError, match=r"'encoder'.*class.*torch.nn.Module subclasses"):
        skprobae.save(VAE(encoder=dict), path)

    def factory(n_in, n_out):
        return nn.Linear(n_in, n_out)

    with pytest.raises(TypeError, match=r"'decoder'.*function"):
        skprobae.save(VAE(decoder=factory), path)

    class Subclass(VAE):
        pass

    with pytest.raises(TypeError, match="skprobae's own estimators"):
        skprobae.save(Subclass(), path)
    assert not path.exists()


def test_load_refuses_classes_that_do_not_import_or_are_not_modules(data, tmp_path):
    path = tmp_path / "model.skprobae"
    skprobae.save(small(VAE, encoder=TinyNetwork), path)

    def point_encoder_at(target):
        def edit(meta):
            meta["estimator"]["params"]["encoder"] = {"__class__": target}

        return edit

    _rewrite_meta(path, point_encoder_at("skprobae._testing:Vanished"))
    with pytest.raises(ValueError, match=r"'skprobae._testing:Vanished'.*could not be imported"):
        skprobae.load(path)
    _rewrite_meta(path, point_encoder_at("os:system"))
    with pytest.raises(ValueError, match=r"not a torch\.nn\.Module class"):
        skprobae.load(path)


def test_the_file_holds_no_pickle_and_loads_with_pickle_disabled(data, missing, tmp_path, monkeypatch):
    model = fit(PAE, data, missing)
    path = tmp_path / "model.skprobae"
    skprobae.save(model, path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["arrays.safetensors", "skprobae.json", "weights.safetensors"]
        json.loads(archive.read("skprobae.json"))

    def refuse(*args, **kwargs):
        raise AssertionError("load used pickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, name, refuse)
    loaded = skprobae.load(path)
    monkeypatch.undo()
    assert_same_outputs(loaded, model, data, missing)


def test_unfitted_estimators_round_trip(tmp_path):
    model = PAE(hidden_layer_sizes=(16, 4), flow="maf", encoder_kwargs={"width": 3}, random_state=5)
    loaded = round_trip(model, tmp_path)
    assert loaded.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(loaded)


def test_device_argument_and_saved_device(data, missing, tmp_path):
    model = fit(ProbabilisticAutoencoder, data, missing)
    path = tmp_path / "model.skprobae"
    model.save(path)
    loaded = skprobae.load(path, device="cpu")
    assert loaded.device == "cpu" and loaded.net_.device == "cpu"
    assert next(loaded.net_.module_.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            skprobae.load(path, device="cuda")

        def saved_on_gpu(meta):
            meta["estimator"]["params"]["device"] = "cuda"

        _rewrite_meta(path, saved_on_gpu)
        with pytest.raises(ValueError, match=r"device='cpu'"):
            skprobae.load(path)
        np.testing.assert_array_equal(skprobae.load(path, device="cpu").score_samples(data), model.score_samples(data))


def test_pickles_from_another_skprobae_version_warn(data, missing, monkeypatch):
    model = fit(VAE, data, missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(model))  # same version: silent
    monkeypatch.setattr(version_module, "__version__", "0.0.1")
    old = pickle.dumps(model)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning, match=r"unpickle estimator VAE .*0\.0\.1") as record:
        restored = pickle.loads(old)
    assert record[0].message.original_version == "0.0.1"
    assert "_skprobae_version" not in vars(restored)
    np.testing.assert_array_equal(restored.score_samples(data), model.score_samples(data))
    imputer = PAEImputer(n_components=2)
    monkeypatch.setattr(version_module, "__version__", "0.0.1")
    old = pickle.dumps(imputer)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning, match="PAEImputer"):
        pickle.loads(old)


def test_files_from_another_version_warn_and_newer_formats_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "model.skprobae"
    monkeypatch.setattr(version_module, "__version__", "0.0.1")
    skprobae.save(VAE(), path)
    monkeypatch.undo()
    assert _read_meta(path)["versions"]["skprobae"] == "0.0.1"
    with pytest.warns(InconsistentVersionWarning, match=r"load estimator VAE .*0\.0\.1"):
        skprobae.load(path)

    def newer(meta):
        meta["format_version"] = FORMAT_VERSION + 1

    _rewrite_meta(path, newer)
    with pytest.raises(ValueError, match="newer than this skprobae"):
        skprobae.load(path)
    (tmp_path / "other").write_bytes(b"\x80\x04not a model")
    with pytest.raises(ValueError, match="not a skprobae model file"):
        skprobae.load(tmp_path / "other")


def test_save_replaces_a_file_atomically_with_ordinary_permissions(tmp_path):
    path = tmp_path / "model.skprobae"
    path.write_bytes(b"an older file")
    skprobae.save(VAE(n_components=3), path)
    assert skprobae.load(path).n_components == 3
    assert [p.name for p in tmp_path.iterdir()] == ["model.skprobae"], "no temporary file is left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_parameters_this_version_does_not_know_are_refused(tmp_path):
    path = tmp_path / "model.skprobae"
    skprobae.save(VAE(), path)

    def add_parameter(meta):
        meta["estimator"]["params"]["from_the_future"] = 1

    _rewrite_meta(path, add_parameter)
    with pytest.raises(ValueError, match="from_the_future"):
        skprobae.load(path)
