"""Smoke test under the lowest dependency versions pyproject.toml declares (installed from constraints-lowest.txt).

Checks first that what is installed is those floors, so the two files cannot drift apart, then fits,
scores, samples, pickles and saves every estimator on a small slice of the digits.
"""

import importlib.metadata
import pickle
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

floors = {}
for requirement in importlib.metadata.requires("skprobae"):
    if "extra ==" not in requirement:
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement.strip()).groups()
        floors[name] = floor
for name, floor in floors.items():
    installed = importlib.metadata.version(name)
    if installed.split("+")[0].split(".")[: len(floor.split("."))] != floor.split("."):
        sys.exit(
            f"{name} {installed} is installed, but pyproject.toml declares {name}>={floor}: fix constraints-lowest.txt"
        )
print("declared floors installed:", ", ".join(f"{n} {importlib.metadata.version(n)}" for n in floors))

import skprobae  # noqa: E402
from skprobae import AEF, PAE, VAE, PAEImputer, ProbabilisticAutoencoder  # noqa: E402

warnings.simplefilter("ignore")
X = load_digits().data[:400] / 16
for cls in (ProbabilisticAutoencoder, PAE, AEF, VAE):
    params = {"max_epochs": 2, "random_state": 0, **({"flow_max_epochs": 2} if cls is PAE else {})}
    model = cls(**params).fit(X)
    scores = model.score_samples(X[:20])
    assert scores.dtype == np.float64 and np.isfinite(scores).all(), cls.__name__
    assert model.transform(X[:5]).shape == (5, model.n_components_)
    assert np.isfinite(model.sample(3, random_state=0)).all()
    assert set(model.predict(X[:20])) <= {-1, 1}
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score_samples(X[:20]), scores)
    if hasattr(skprobae, "save"):
        with tempfile.TemporaryDirectory() as folder:
            skprobae.save(model, Path(folder) / "model")
            np.testing.assert_array_equal(skprobae.load(Path(folder) / "model").score_samples(X[:20]), scores)
    print(cls.__name__, "ok")
X_missing = X.copy()
X_missing[::3, 5] = np.nan
filled = PAEImputer(n_components=2, max_epochs=2, flow_max_epochs=2, random_state=0).fit_transform(X_missing)
assert np.isfinite(filled).all()
print("PAEImputer ok")
