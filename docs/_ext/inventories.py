"""Intersphinx inventories written from a list, because the real ones cannot be fetched.

The build machines reach no network but the package registries, so
``intersphinx`` cannot download ``objects.inv`` from scikit-learn's, numpy's,
PyTorch's, skorch's, zuko's, pandas' or dask's sites. Instead :func:`write_inventories`
writes one inventory per project, in Sphinx's version-2 format, holding the objects
these pages and the docstrings refer to, with their addresses on each project's site
(the URL patterns of each site's generated API pages). A reference to an object not
listed here renders as plain code, without a link and without a warning.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# project -> (base URL, {role: {name: relative URI}}); "$" in a URI stands for the name; "URI | title" gives a
# label the title a reference without its own shows.
_SKLEARN_API = "modules/generated/$.html#$"
_NUMPY_API = "reference/generated/$.html#$"
_TORCH_API = "generated/$.html#$"

PROJECTS: dict[str, tuple[str, dict[str, dict[str, str]]]] = {
    "sklearn": (
        "https://scikit-learn.org/stable/",
        {
            "py:class": dict.fromkeys(
                [
                    "sklearn.pipeline.Pipeline",
                    "sklearn.model_selection.GridSearchCV",
                    "sklearn.model_selection.RandomizedSearchCV",
                    "sklearn.ensemble.IsolationForest",
                    "sklearn.ensemble.HistGradientBoostingClassifier",
                    "sklearn.ensemble.ExtraTreesRegressor",
                    "sklearn.neighbors.KernelDensity",
                    "sklearn.impute.IterativeImputer",
                    "sklearn.impute.SimpleImputer",
                    "sklearn.impute.KNNImputer",
                    "sklearn.preprocessing.StandardScaler",
                    "sklearn.preprocessing.OneHotEncoder",
                    "sklearn.decomposition.PCA",
                    "sklearn.mixture.GaussianMixture",
                    "sklearn.base.BaseEstimator",
                    "sklearn.exceptions.InconsistentVersionWarning",
                    "sklearn.exceptions.FitFailedWarning",
                ],
                _SKLEARN_API,
            ),
            "py:function": dict.fromkeys(
                [
                    "sklearn.pipeline.make_pipeline",
                    "sklearn.metrics.roc_auc_score",
                    "sklearn.base.clone",
                    "sklearn.set_config",
                    "sklearn.get_config",
                    "sklearn.config_context",
                    "sklearn.utils.validation.check_is_fitted",
                    "sklearn.utils.estimator_checks.parametrize_with_checks",
                    "sklearn.model_selection.train_test_split",
                    "sklearn.model_selection.cross_val_score",
                    "sklearn.datasets.load_digits",
                ],
                _SKLEARN_API,
            ),
            "std:term": {"meta-estimator": "glossary.html#term-meta-estimator"},
            "std:label": {
                "metadata_routing": "metadata_routing.html#metadata-routing",
                # set_output's docstring, inherited by the transformers
                "df_output_transform": (
                    "modules/df_output_transform.html#df-output-transform | Pandas/Polars output for transformers"
                ),
                "sphx_glr_auto_examples_miscellaneous_plot_set_output.py": (
                    "auto_examples/miscellaneous/plot_set_output.html"
                    "#sphx-glr-auto-examples-miscellaneous-plot-set-output-py | Introducing the set_output API"
                ),
            },
        },
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        {
            "py:class": dict.fromkeys(
                [
                    "numpy.ndarray",
                    "numpy.memmap",
                    "numpy.random.RandomState",
                    "numpy.random.Generator",
                    "numpy.float64",
                    "numpy.float32",
                ],
                _NUMPY_API,
            ),
            "py:function": dict.fromkeys(["numpy.load", "numpy.save"], _NUMPY_API),
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        {
            "py:class": {
                **dict.fromkeys(
                    [
                        "torch.nn.Module",
                        "torch.nn.Linear",
                        "torch.nn.Conv2d",
                        "torch.autocast",
                        "torch.amp.GradScaler",
                    ],
                    _TORCH_API,
                ),
                "torch.Tensor": "tensors.html#torch.Tensor",
                "torch.device": "tensor_attributes.html#torch.device",
                "torch.dtype": "tensor_attributes.html#torch.dtype",
                "torch.distributions.distribution.Distribution": "distributions.html#$",
            },
            "py:function": dict.fromkeys(["torch.set_num_threads", "torch.get_num_threads"], _TORCH_API),
        },
    ),
    "skorch": (
        "https://skorch.readthedocs.io/en/stable/",
        {
            "py:class": {
                "skorch.net.NeuralNet": "net.html#$",
                "skorch.callbacks.EarlyStopping": "callbacks.html#$",
                "skorch.callbacks.Callback": "callbacks.html#$",
                "skorch.hf.AccelerateMixin": "hf.html#$",
            }
        },
    ),
    "zuko": (
        "https://zuko.readthedocs.io/stable/",
        {
            "py:class": {
                "zuko.flows.autoregressive.MAF": "api/zuko.flows.autoregressive.html#$",
                "zuko.flows.spline.NSF": "api/zuko.flows.spline.html#$",
                "zuko.flows.coupling.NICE": "api/zuko.flows.coupling.html#$",
            }
        },
    ),
    "pandas": (
        "https://pandas.pydata.org/docs/",
        {"py:class": {"pandas.DataFrame": "reference/api/$.html#$", "pandas.Categorical": "reference/api/$.html#$"}},
    ),
    "dask": (
        "https://docs.dask.org/en/stable/",
        {
            "py:class": {"dask.array.Array": "generated/$.html#$"},
            "py:function": {"dask.array.map_blocks": "generated/$.html#$", "dask.array.store": "generated/$.html#$"},
        },
    ),
}


def _inventory_bytes(project: str, entries: dict[str, dict[str, str]]) -> bytes:
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: stable\n"
    header += "# The remainder of this file is compressed using zlib.\n"
    lines = []
    for role, names in entries.items():
        for name, target in sorted(names.items()):
            uri, _, title = target.partition(" | ")  # "uri | title": a label's own display title
            display = "-" if role.startswith("py:") else (title or name)
            lines.append(f"{name} {role} 1 {uri.replace('$', name)} {display}\n")
    return header.encode() + zlib.compress("".join(lines).encode())


def write_inventories(folder: Path) -> dict[str, tuple[str, str]]:
    """Write one inventory per project into ``folder``; return an ``intersphinx_mapping``."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (url, entries) in PROJECTS.items():
        path = folder / f"{project}.inv"
        content = _inventory_bytes(project, entries)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
        mapping[project] = (url, str(path))
    return mapping
