import numpy as np
import pytest

from skprobae.datasets import DATA_ENV, data_home, load_images, load_odds


@pytest.fixture
def data_dir(tmp_path):
    X = np.arange(6 * 784, dtype=np.uint8).reshape(6, 784)
    np.savez(tmp_path / "mnist.npz", X=X, y=np.arange(6), split=np.array([0, 0, 0, 0, 1, 1]))
    (tmp_path / "odds").mkdir()
    np.savez(tmp_path / "odds" / "toy.npz", X=np.ones((4, 2)), y=np.array([0, 0, 0, 1]))
    return tmp_path


def test_load_images_splits_and_scales(data_dir):
    X, _ = load_images("mnist", "train", data_dir=data_dir)
    assert X.shape == (4, 784) and X.dtype == np.float32 and X.max() <= 1
    X_test, y_test = load_images("mnist", "test", data_dir=data_dir, scale=False)
    assert X_test.dtype == np.uint8 and list(y_test) == [4, 5]


def test_environment_variable(data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    assert data_home() == data_dir
    X, y = load_odds("toy")
    assert X.shape == (4, 2) and y.sum() == 1


def test_missing_folder_and_names(data_dir, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=DATA_ENV):
        data_home()
    with pytest.raises(FileNotFoundError, match="toy"):
        load_odds("nope", data_dir=data_dir)
    with pytest.raises(ValueError, match="mnist"):
        load_images("cifar", data_dir=data_dir)


def test_load_penguins_gives_the_mixed_table_with_its_missing_entries():
    pytest.importorskip("pandas")
    import importlib.util

    if importlib.util.find_spec("palmerpenguins") is None:
        pytest.skip("palmerpenguins is not installed")
    from skprobae.datasets import load_penguins

    table = load_penguins()
    assert table.shape == (344, 7)
    assert [str(t) for t in table.dtypes[["species", "island", "sex"]]] == ["category"] * 3
    assert int(table["sex"].isna().sum()) == 11 and int(table["bill_length_mm"].isna().sum()) == 2
