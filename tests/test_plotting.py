import numpy as np
import pytest

pytest.importorskip("matplotlib")

from skprobae.plotting import plot_image_rows


def test_plot_image_rows_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    rows = {"original": rng.uniform(size=(4, 64)), "std": np.full((3, 64), np.nan)}
    figure = plot_image_rows(rows, (8, 8), scale={"original": (0, 1)}, path=tmp_path / "grid.png", title="t")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert len(figure.axes) == 2 * 4
