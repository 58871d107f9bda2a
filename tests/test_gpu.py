"""Every estimator's public API on a GPU (``device="cuda"``); skipped without CUDA.

Run on a GPU machine with ``python -m pytest -m gpu tests/test_gpu.py``.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skprobae import PAE, PAEImputer
from skprobae._testing import AUTOENCODERS, small

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(400, 2))
    return (latent @ rng.normal(size=(2, 8)) + 0.1 * rng.normal(size=(400, 8))).astype(np.float32)


@pytest.fixture(scope="module", params=AUTOENCODERS, ids=lambda cls: cls.__name__)
def on_gpu(request, data):
    return small(request.param, device="cuda").fit(data)


def test_the_whole_api_runs_on_the_gpu(on_gpu, data):
    assert next(on_gpu.net_.module_.parameters()).device.type == "cuda"
    Z = on_gpu.transform(data)
    outputs = [
        Z,
        on_gpu.inverse_transform(Z),
        on_gpu.score_samples(data),
        on_gpu.decision_function(data),
        on_gpu.sample(7, random_state=0),
        *on_gpu.reconstruct(data, return_std=True),
    ]
    for out in outputs:
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and np.isfinite(out).all()
    assert set(np.unique(on_gpu.predict(data))) <= {-1, 1}
    if isinstance(on_gpu, PAE):
        holes = data[:5].copy()
        holes[:, :3] = np.nan
        filled = on_gpu.impute(holes, n_samples=10, n_steps=20)
        assert np.isfinite(filled).all()


def test_gpu_and_cpu_agree_on_the_same_model(on_gpu, data):
    on_cpu = pickle.loads(pickle.dumps(on_gpu)).set_params(device="cpu")
    assert next(on_cpu.net_.module_.parameters()).device.type == "cuda"  # moved at the next call, not before
    scores = on_cpu.score_samples(data)
    assert next(on_cpu.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(scores, on_gpu.score_samples(data), rtol=1e-4, atol=1e-4 * np.abs(scores).max())
    on_cpu.set_params(device="cuda")
    np.testing.assert_allclose(on_cpu.score_samples(data), on_gpu.score_samples(data), rtol=1e-6)


def test_training_continues_after_moving_between_devices(data):
    model = small(PAE, device="cuda").fit(data)
    model.set_params(device="cpu").partial_fit(data)  # the optimizer's state follows the parameters
    assert next(model.net_.module_.parameters()).device.type == "cpu"
    model.set_params(device="cuda", mixed_precision="fp16").partial_fit(data)
    assert model.net_.scaler_ is not None and np.isfinite(model.score_samples(data)).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training(data, precision):
    for cls in AUTOENCODERS:
        model = small(cls, device="cuda", mixed_precision=precision).fit(data)
        assert np.isfinite(model.history_[:, "train_loss"]).all()
        assert np.isfinite(model.score_samples(data)).all()


def test_pickled_on_gpu_loads_on_a_cpu_only_process(on_gpu, data, tmp_path):
    model_path, data_path, out_path = tmp_path / "model.pkl", tmp_path / "X.npy", tmp_path / "scores.npy"
    model_path.write_bytes(pickle.dumps(on_gpu.set_params(device="auto")))
    np.save(data_path, data)
    script = textwrap.dedent(
        f"""
        import pickle, warnings
        import numpy as np, torch
        assert not torch.cuda.is_available()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skorch says it maps CUDA tensors to the CPU
            model = pickle.loads(open({str(model_path)!r}, "rb").read())
        np.save({str(out_path)!r}, model.score_samples(np.load({str(data_path)!r})))
        """
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    expected = pickle.loads(pickle.dumps(on_gpu)).set_params(device="cpu").score_samples(data)
    np.testing.assert_array_equal(np.load(out_path), expected)


def test_imputer_on_the_gpu(data):
    holes = data.astype(np.float64)
    holes[np.random.default_rng(0).random(holes.shape) < 0.1] = np.nan
    filled, std = small(PAEImputer, device="cuda").fit(holes).transform(holes, return_std=True)
    assert np.isfinite(filled).all() and np.isfinite(std).all()
