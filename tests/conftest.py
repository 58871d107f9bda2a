import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def digits():
    """Standardized digits (1797 x 64) and labels."""
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture
def blobs():
    """Small 2-cluster data with a low-dimensional structure."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 2))
    X = latent @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(200, 6))
    return X
