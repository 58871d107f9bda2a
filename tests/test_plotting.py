import numpy as np
import pytest

pytest.importorskip("matplotlib")

from sklearn.datasets import load_digits

from skprobae import ProbabilisticAutoencoder
from skprobae.plotting import plot_image_rows, plot_mixture_components, plot_reconstructions, plot_samples

PARAMS = {"max_epochs": 2, "n_components": 2, "hidden_layer_sizes": (16,), "random_state": 0}


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:200] / 16.0


def assert_png(path):
    assert path.stat().st_size > 1000


def test_plot_image_rows_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    rows = {"original": rng.uniform(size=(4, 64)), "std": np.full((3, 64), np.nan)}
    figure = plot_image_rows(rows, (8, 8), scale={"original": (0, 1)}, path=tmp_path / "grid.png", title="t")
    assert_png(tmp_path / "grid.png")
    assert len(figure.axes) == 2 * 4


@pytest.mark.parametrize("distribution", ["normal_diag", "t_diag"])
def test_plot_reconstructions(digits, tmp_path, distribution):
    model = ProbabilisticAutoencoder(distribution=distribution, **PARAMS).fit(digits)
    figure = plot_reconstructions(model, digits, (8, 8), n_images=6, path=tmp_path / "rec.png")
    assert_png(tmp_path / "rec.png")
    assert len(figure.axes) == 3 * 6
    assert [ax.get_ylabel() for ax in figure.axes[::6]] == ["original", "reconstruction", "pixel std"]


def test_plot_mixture_components_ranked_by_log_weight(digits, tmp_path):
    model = ProbabilisticAutoencoder(n_mixtures=3, **PARAMS).fit(digits)
    figure = plot_mixture_components(
        model, digits, (8, 8), n_images=4, min_log_weight=np.log(0.3), path=tmp_path / "c.png"
    )
    assert_png(tmp_path / "c.png")
    assert len(figure.axes) == 4 * (3 + 1)
    _, log_weights = model.predict_components(digits[:4])
    for i, row in enumerate(np.reshape(figure.axes, (4, 4))):
        assert row[0].get_title() == "input"
        ranked = np.sort(log_weights[i])[::-1]
        shown = [float(ax.get_title().split("=")[1]) for ax in row[1:]]
        np.testing.assert_allclose(shown, ranked, atol=0.006)
        faded = [ax.get_images()[0].get_alpha() < 1 for ax in row[1:]]
        assert faded == list(ranked < np.log(0.3))


def test_plot_samples(digits, tmp_path):
    model = ProbabilisticAutoencoder(**PARAMS).fit(digits)
    figure = plot_samples(model, (8, 8), n_samples=7, n_columns=5, path=tmp_path / "s.png")
    assert_png(tmp_path / "s.png")
    assert len(figure.axes) == 2 * 5
    assert sum(bool(ax.get_images()) for ax in figure.axes) == 7
