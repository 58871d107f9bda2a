import math

import numpy as np
import pytest

from skprobae.metrics import bits_per_dim


def test_bits_per_dim_of_uniform_and_arrays():
    assert bits_per_dim(0.0, n_features=784) == pytest.approx(8.0)
    assert bits_per_dim(0.0, n_features=10, n_bins=1) == 0.0
    ll = np.array([-784 * math.log(2), 0.0])
    np.testing.assert_allclose(bits_per_dim(ll, 784), [9.0, 8.0])
    assert bits_per_dim(ll, 784).dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"n_features": 0}, "n_features"), ({"n_features": 2, "n_bins": 0}, "n_bins")]
)
def test_bits_per_dim_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bits_per_dim(1.0, **kwargs)
