"""Saving and loading fitted estimators without pickle.

:func:`save` writes an estimator to one zip archive (stored, not
compressed) of three standard files:

``skprobae.json``
    the format version, the versions of skprobae, torch, scikit-learn,
    numpy and safetensors that wrote it, and the estimator: its class name,
    its constructor parameters and every fitted attribute (numbers, strings,
    tuples, dicts with any keys, histories, nested estimators such as
    ``PAEImputer.pae_``), with references into the two tensor files;
``weights.safetensors``
    the ``state_dict`` of every torch module (``net_``, PAE's ``flow_net_``);
``arrays.safetensors``
    the numeric numpy arrays among the fitted attributes.

:func:`load` reads them back without running anything from the file: no
pickle, no ``torch.load``. The estimator is built from its parameters, each
torch module is rebuilt by the estimator's own builders (``_build_module``,
PAE's ``_make_flow``) and wrapped in a skorch net as ``fit`` wraps it, then
its weights are loaded; the outputs are those of the saved model, bit for bit
on the same device.

A zip archive rather than a folder: one file to copy, attach or version, and
written atomically (a temporary file renamed over the target), so a failed
save never leaves half a model behind. Unzipped, its members are ordinary
JSON and safetensors files.

Parameters that are classes (``encoder``, ``decoder``: ``torch.nn.Module``
subclasses) are stored by import path (``module:qualname``) and imported
again at load, so they must be importable by that path in the loading
process. Objects that only code can describe (a module instance, a zuko flow
object, a function, a ``RandomState``) are refused: persist such models with
``joblib.dump`` or :mod:`pickle`, which run code when loaded (load only
pickles you trust).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import math
import os
import secrets
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import sklearn
import torch
from sklearn.base import BaseEstimator
from skorch.history import History
from torch import nn

from . import _version
from ._base import BaseAutoencoder, resolve_device, torch_seeded
from ._net import LikelihoodNet

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
"""Version of the file layout written by :func:`save`; :func:`load` reads this version and older ones."""

_META, _WEIGHTS, _ARRAYS = "skprobae.json", "weights.safetensors", "arrays.safetensors"
# State that lives only during a fit, or is derived from the parameters at load.
_TRANSIENT = frozenset({"_fit_accelerator", "_fit_mode", "_interrupted_net", "_interrupt_raises", "_structure"})
_FORMAT = "skprobae"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same model gives the same bytes
# The keys that mark a JSON object as an encoded value (a dict that uses them as keys is stored as pairs).
_TAGS = frozenset(
    {
        "__tuple__",
        "__dict__",
        "__float__",
        "__scalar__",
        "__array__",
        "__strings__",
        "__class__",
        "__history__",
        "__estimator__",
        "__history_of__",
    }
)

PathLike = str | os.PathLike


# --------------------------------------------------------------------- builders
def _build_autoencoder(estimator: BaseAutoencoder, n_features: int) -> nn.Module:
    return estimator._build_module(np.zeros((2, n_features)))


def _build_flow_prior(estimator: BaseAutoencoder, n_features: int) -> nn.Module:
    return estimator._build_flow_prior()


_NET_BUILDERS: dict[str, tuple[Callable[[BaseAutoencoder, int], nn.Module], str | None]] = {
    "net_": (_build_autoencoder, "_build_module"),
    "flow_net_": (_build_flow_prior, "_make_flow"),
}
"""How each skorch net attribute is rebuilt, and the estimator hook it needs."""


def _estimator_classes() -> dict[str, type]:
    import skprobae

    return {
        name: obj
        for name in skprobae.__all__
        if inspect.isclass(obj := getattr(skprobae, name)) and issubclass(obj, BaseEstimator)
    }


# ---------------------------------------------------------------------- writing
class _Writer:
    """Encodes an estimator into JSON-able nodes, collecting its tensors on the way."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}
        self.arrays: dict[str, torch.Tensor] = {}

    def estimator(self, estimator: BaseEstimator, prefix: str) -> dict:
        cls = type(estimator)
        name = cls.__name__
        if _estimator_classes().get(name) is not cls:
            raise TypeError(
                f"skprobae.save stores skprobae's own estimators ({', '.join(_estimator_classes())}), got "
                f"{cls.__module__}.{cls.__qualname__}; persist it with joblib.dump or pickle instead."
            )
        params = estimator.get_params(deep=False)
        state = {key: value for key, value in vars(estimator).items() if key not in params and key not in _TRANSIENT}
        nets = {key: value for key, value in state.items() if isinstance(value, LikelihoodNet)}
        histories = {id(net.history): key for key, net in nets.items()}
        return {
            "class": name,
            "params": {
                key: self.param(value, f"{name} parameter {key!r}", takes_class=f"{key}_kwargs" in params)
                for key, value in params.items()
            },
            "nets": {key: self.net(estimator, key, net, f"{prefix}{key}/") for key, net in nets.items()},
            "attributes": {
                key: (
                    {"__history_of__": histories[id(value)]}
                    if id(value) in histories
                    else self.value(value, f"{name}.{key}", f"{prefix}{key}")
                )
                for key, value in state.items()
                if key not in nets
            },
        }

    def net(self, estimator: BaseEstimator, name: str, net: LikelihoodNet, prefix: str) -> dict:
        builder, hook = _NET_BUILDERS.get(name, (None, None))
        if builder is None or not hasattr(estimator, hook):
            raise TypeError(
                f"{type(estimator).__name__}.{name} is a skorch net that skprobae.save does not know how to rebuild; "
                "persist the model with joblib.dump or pickle."
            )
        state = net.module_.state_dict()
        for key, tensor in state.items():
            self.weights[prefix + key] = tensor.detach().to("cpu").contiguous().clone()
        return {
            "module": type(net.module_).__name__,
            "prefix": prefix,
            "stage": net.stage,
            "lr": float(net.lr),
            "max_epochs": int(net.max_epochs),
            "batch_size": int(net.batch_size),
            "tensors": list(state),
            "history": self.value(list(net.history), f"{type(estimator).__name__}.{name}.history", prefix + "history"),
        }

    def param(self, value: Any, where: str, key: str = "", takes_class: bool = True) -> Any:
        """A constructor parameter: JSON values, tuples, dicts, numpy scalars, ``nn.Module`` classes.

        ``takes_class``: whether the parameter also accepts a class (with a ``*_kwargs`` companion), which
        the error for a module instance then suggests.
        """
        if inspect.isclass(value):
            return {"__class__": _class_path(value, where)}
        if isinstance(value, nn.Module):
            instead = (
                "pass the class (with its arguments in the *_kwargs parameter)"
                if takes_class
                else "pass one of the parameter's names instead (e.g. flow='maf' with flow_transforms and "
                "flow_hidden_layer_sizes)"
            )
            raise TypeError(
                f"{where} is a {type(value).__name__} instance. skprobae.save stores the classes of custom networks "
                f"by import path, never objects, whose code a data file cannot describe: {instead}, or persist "
                "this model with joblib.dump or pickle (which run code when loaded: load only files you trust)."
            )
        if isinstance(value, (tuple, list, dict)):
            return self._container(value, where, key, self.param)
        plain = _plain(value)
        if plain is not _NOT_PLAIN:
            return plain
        hint = ""
        if isinstance(value, (np.random.RandomState, np.random.Generator)):
            hint = " (pass an int seed instead)"
        elif callable(value):
            hint = " (only torch.nn.Module classes are stored, by import path; pass the class)"
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which skprobae.save cannot store "
            f"as JSON{hint}; persist this model with joblib.dump or pickle."
        )

    def value(self, value: Any, where: str, key: str) -> Any:
        """A fitted attribute: JSON values, tuples, dicts, arrays, tensors, histories, skprobae estimators."""
        if isinstance(value, History):
            return {"__history__": self.value(list(value), where, key)}
        if isinstance(value, BaseEstimator):
            return {"__estimator__": self.estimator(value, f"{key}/")}
        if isinstance(value, torch.Tensor):
            return {**self._array(value.detach().to("cpu").numpy(), where, key), "tensor": True}
        if isinstance(value, np.ndarray):
            return self._array(value, where, key)
        if isinstance(value, (tuple, list, dict)):
            return self._container(value, where, key, self.value)
        plain = _plain(value)
        if plain is not _NOT_PLAIN:
            return plain
        raise TypeError(
            f"The fitted attribute {where} is a {type(value).__module__}.{type(value).__qualname__}, which "
            "skprobae.save cannot store; persist this model with joblib.dump or pickle."
        )

    @staticmethod
    def _container(value: tuple | list | dict, where: str, key: str, encode: Callable[[Any, str, str], Any]) -> Any:
        """Tuples tagged, lists as they are, dicts as JSON objects when their keys are strings, else as pairs."""
        if isinstance(value, (tuple, list)):
            items = [encode(item, f"{where}[{i}]", f"{key}/{i}") for i, item in enumerate(value)]
            return {"__tuple__": items} if isinstance(value, tuple) else items
        if all(isinstance(k, str) for k in value) and not _TAGS.intersection(value):
            return {k: encode(v, f"{where}[{k!r}]", f"{key}/{i}") for i, (k, v) in enumerate(value.items())}
        pairs = [
            [encode(k, f"{where} key {k!r}", f"{key}/k{i}"), encode(v, f"{where}[{k!r}]", f"{key}/{i}")]
            for i, (k, v) in enumerate(value.items())
        ]
        return {"__dict__": pairs}

    def _array(self, array: np.ndarray, where: str, key: str) -> dict:
        if array.dtype.kind in "OUS":
            items = array.ravel().tolist()
            if not all(isinstance(item, str) for item in items):
                raise TypeError(
                    f"The fitted attribute {where} is an array of {array.dtype} holding non-strings, which "
                    "skprobae.save cannot store."
                )
            return {"__strings__": items, "dtype": array.dtype.str, "shape": list(array.shape)}
        if array.dtype.kind not in "biuf":
            raise TypeError(f"The fitted attribute {where} has dtype {array.dtype}, which skprobae.save cannot store.")
        native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        self.arrays[key] = torch.from_numpy(native.copy())
        return {"__array__": key, "dtype": native.dtype.str}


_NOT_PLAIN = object()


def _plain(value: Any) -> Any:
    """The JSON form of a scalar (None, bool, int, float, str, numpy scalar), or ``_NOT_PLAIN``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return {"__scalar__": _plain(value.item()), "dtype": value.dtype.str}
    return _NOT_PLAIN


def _class_path(cls: type, where: str) -> str:
    """``module:qualname`` of a ``torch.nn.Module`` class that imports back by that path."""
    if not issubclass(cls, nn.Module):
        raise TypeError(
            f"{where} is the class {cls.__qualname__}; skprobae.save stores classes only when they are "
            "torch.nn.Module subclasses. Persist this model with joblib.dump or pickle."
        )
    module, qualname = cls.__module__, cls.__qualname__
    path = f"{module}:{qualname}"
    if module == "__main__" or "<locals>" in qualname:
        where_defined = "in __main__ (a script or notebook)" if module == "__main__" else "inside a function"
        raise ValueError(
            f"{where} is the class {qualname} defined {where_defined}, which another process cannot import by "
            f"its path {path!r}. Move it to a module (importable where the model is loaded), or persist this "
            "model with joblib.dump or pickle."
        )
    try:
        found = _import_path(path)
    except Exception as exc:
        raise ValueError(
            f"{where} is the class {qualname}, which is not importable by its path {path!r}: {exc}"
        ) from exc
    if found is not cls:
        raise ValueError(f"{where}: importing {path!r} gives another object than the class {qualname} itself.")
    return path


def _import_path(path: str) -> Any:
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def save(estimator: BaseEstimator, path: PathLike) -> None:
    """Save a skprobae estimator, fitted or not, to one file, without pickle.

    The file is a zip archive of JSON (the parameters and fitted attributes)
    and safetensors files (the network weights and the fitted arrays); see
    :mod:`skprobae.persistence`. :func:`load` reads it without running any
    code from it, in any process where skprobae (and any custom network class
    the model uses) can be imported. An existing file at ``path`` is
    replaced.

    Parameters
    ----------
    estimator : BaseEstimator
        One of skprobae's estimators (``skprobae.__all__``).
    path : str or path-like
        The file to write, e.g. ``"model.skprobae"``.

    Raises
    ------
    TypeError
        If a parameter or fitted attribute cannot be stored without code: a
        ``torch.nn.Module`` instance (pass its class instead), a function, a
        ``RandomState``, or any other object that is not JSON; the message
        names it. Persist such models with ``joblib.dump``.
    ValueError
        If a network class cannot be imported by its path (defined inside a
        function or in ``__main__``).

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import skprobae
    >>> X = np.random.default_rng(0).normal(size=(100, 4))
    >>> model = skprobae.ProbabilisticAutoencoder(
    ...     n_components=2, hidden_layer_sizes=(8,), max_epochs=2, random_state=0
    ... ).fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     skprobae.save(model, Path(folder) / "model.skprobae")
    ...     loaded = skprobae.load(Path(folder) / "model.skprobae")
    >>> bool((loaded.score_samples(X) == model.score_samples(X)).all())
    True
    """
    writer = _Writer()
    node = writer.estimator(estimator, "")
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {
            "skprobae": _version.__version__,
            "torch": torch.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "safetensors": getattr(safetensors, "__version__", "unknown"),
            "python": ".".join(map(str, sys.version_info[:3])),
        },
        "estimator": node,
    }
    members = {
        _META: json.dumps(meta, indent=1, allow_nan=False).encode(),
        _WEIGHTS: safetensors.torch.save(writer.weights, metadata={"format": "pt"}),
        _ARRAYS: safetensors.torch.save(writer.arrays, metadata={"format": "np"}),
    }
    path = Path(path)
    # Written beside the target, then renamed over it: a failed save leaves the old file (or none) intact.
    # open(..., "xb") rather than tempfile.mkstemp, whose files are private (0600) whatever the umask.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            for name, data in members.items():
                archive.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


# ---------------------------------------------------------------------- reading
class _Reader:
    def __init__(self, weights: dict[str, torch.Tensor], arrays: dict[str, torch.Tensor], device: str | None):
        self.weights, self.arrays, self.device = weights, arrays, device

    def estimator(self, node: dict) -> BaseEstimator:
        classes = _estimator_classes()
        name = node.get("class")
        if name not in classes:
            raise ValueError(
                f"The file holds an estimator of class {name!r}, which is not one of skprobae's ({', '.join(classes)})."
            )
        params = {key: self.value(value, f"{name} parameter {key!r}") for key, value in node["params"].items()}
        unknown = sorted(set(params) - set(classes[name]().get_params(deep=False)))
        if unknown:
            raise ValueError(
                f"The file sets parameter(s) {', '.join(unknown)} that {name} of skprobae {_version.__version__} "
                "does not have; load it with the skprobae version that wrote it."
            )
        estimator = classes[name](**params)
        if self.device is not None and "device" in params:
            estimator.set_params(device=self.device)
        histories = {}
        attributes = {}
        for key, value in node["attributes"].items():
            if isinstance(value, dict) and "__history_of__" in value:
                histories[key] = value["__history_of__"]
            else:
                attributes[key] = self.value(value, f"{name}.{key}")
        vars(estimator).update(attributes)  # the builders may read fitted attributes (n_features_in_, ...)
        nets = {key: self.net(estimator, key, net) for key, net in node["nets"].items()}
        vars(estimator).update(attributes)  # and restore any a builder set (AEF's core indices)
        vars(estimator).update(nets)
        for key, net_name in histories.items():
            setattr(estimator, key, nets[net_name].history)
        if nets and hasattr(estimator, "_structure_params"):  # what warm_start / partial_fit compare against
            estimator._structure = estimator._structure_params()
        if nets:
            try:
                estimator._sync_modules()
            except ValueError as exc:
                raise ValueError(
                    f"{exc} The model was saved with device={estimator.device!r}: pass load(path, device='cpu') "
                    "(or another available device) to load it here."
                ) from exc
        return estimator

    def net(self, estimator: BaseAutoencoder, name: str, node: dict) -> LikelihoodNet:
        owner, prefix = type(estimator).__name__, node["prefix"]
        builder, hook = _NET_BUILDERS.get(name, (None, None))
        if builder is None or not hasattr(estimator, hook):
            raise ValueError(f"The file holds a net {owner}.{name} that this skprobae version cannot rebuild.")
        with torch_seeded(0):  # the builders draw initial weights (then replaced): keep the caller's RNG intact
            module = builder(estimator, int(estimator.n_features_in_))
        if type(module).__name__ != node["module"]:
            raise ValueError(
                f"{owner}.{name}: the file holds a {node['module']}, but the parameters build a "
                f"{type(module).__name__}."
            )
        missing = [key for key in node["tensors"] if prefix + key not in self.weights]
        if missing:
            raise ValueError(f"{owner}.{name}: the weights file lacks {len(missing)} tensor(s), e.g. {missing[0]!r}.")
        state = {key: self.weights[prefix + key] for key in node["tensors"]}
        try:
            # assign: the module takes the saved tensors as they are (dtype included), not casts of them
            module.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{owner}.{name}: the saved weights do not fit the module rebuilt from the parameters: {exc}"
            ) from exc
        history = History(self.value(node["history"], f"{owner}.{name}.history"))
        has_validation = bool(history) and "valid_loss" in history[-1]
        net = estimator._make_net(
            module,
            stage=node["stage"],
            max_epochs=node["max_epochs"],
            learning_rate=node["lr"],
            batch_size=node["batch_size"],
            device="cpu",
            has_validation=has_validation,
        )
        net.initialize_for_inference()  # the optimizer (fresh, as saved models hold none) is built if training resumes
        net.history = history
        return net

    def value(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.value(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        tag = next((key for key in value if key in _TAGS), None)
        if tag is None:
            return {key: self.value(item, where) for key, item in value.items()}
        body = value[tag]
        if tag == "__tuple__":
            return tuple(self.value(item, where) for item in body)
        if tag == "__dict__":
            return {_hashable(self.value(k, where)): self.value(v, where) for k, v in body}
        if tag == "__float__":
            return float(body)
        if tag == "__scalar__":
            return np.dtype(value["dtype"]).type(self.value(body, where))
        if tag == "__array__":
            if body not in self.arrays:
                raise ValueError(f"{where}: the arrays file lacks {body!r}.")
            tensor = self.arrays[body]
            return tensor if value.get("tensor") else tensor.numpy().astype(_numeric_dtype(value["dtype"]), copy=False)
        if tag == "__strings__":
            return np.array(body, dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        if tag == "__class__":
            return _import_class(body, where)
        if tag == "__history__":
            return History(self.value(body, where))
        if tag == "__estimator__":
            return self.estimator(body)
        raise ValueError(f"{where}: unexpected {tag} in the file.")


def _numeric_dtype(name: str) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in "biuf":
        raise ValueError(f"The file declares an array of dtype {name!r}; only numbers and booleans are stored.")
    return dtype


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _import_class(path: str, where: str) -> type:
    try:
        cls = _import_path(path)
    except Exception as exc:
        raise ValueError(
            f"{where} is the class {path!r}, which could not be imported here ({type(exc).__name__}: {exc}). "
            "Install or put on sys.path the module that defines it, under the same name, before loading."
        ) from exc
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ValueError(f"{where}: {path!r} is not a torch.nn.Module class; refusing to use it.")
    return cls


def load(path: PathLike, *, device: str | None = None) -> BaseEstimator:
    """Load an estimator written by :func:`save`.

    Nothing from the file is executed: the parameters and attributes are
    JSON, the tensors safetensors. The torch modules are rebuilt by the
    estimator's own code from its parameters; network classes named by
    import path (``encoder``, ``decoder``) are imported, and must be
    ``torch.nn.Module`` subclasses.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    device : str or None, default=None
        Where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``);
        sets the ``device`` parameter of the loaded estimator (and of a nested
        one). None keeps the saved parameter, so a model saved with
        ``device="cuda"`` needs ``device="cpu"`` on a machine without a GPU.

    Returns
    -------
    estimator : BaseEstimator
        The estimator, with the saved parameters and fitted attributes; its
        outputs equal the saved model's on the same device.

    Raises
    ------
    ValueError
        If the file is not a skprobae model, was written by a newer format
        version, names a class that cannot be imported, or holds weights
        that do not fit the rebuilt modules.

    Warns
    -----
    skprobae.exceptions.InconsistentVersionWarning
        If the file was written by another skprobae version.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import skprobae
    >>> X = np.random.default_rng(0).normal(size=(100, 4))
    >>> pae = skprobae.PAE(
    ...     n_components=2, hidden_layer_sizes=(8,), max_epochs=2, flow_max_epochs=2, random_state=0
    ... ).fit(X)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     pae.save(Path(folder) / "pae.skprobae")
    ...     loaded = skprobae.load(Path(folder) / "pae.skprobae", device="cpu")
    >>> bool((loaded.sample(3, random_state=0) == pae.sample(3, random_state=0)).all())
    True
    >>> loaded.offsets_ == pae.offsets_
    True
    """
    if device is not None:
        resolve_device(device)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if _META not in names:
                raise ValueError(f"{os.fspath(path)!r} is not a skprobae model file (it has no {_META}).")
            meta = json.loads(archive.read(_META))
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise ValueError(f"{os.fspath(path)!r} is not a skprobae model file.")
            written = meta.get("format_version")
            if not isinstance(written, int) or written > FORMAT_VERSION:
                raise ValueError(
                    f"{os.fspath(path)!r} has format version {written}, newer than this skprobae "
                    f"({_version.__version__}) reads (up to {FORMAT_VERSION}): it was written by skprobae "
                    f"{meta.get('versions', {}).get('skprobae', '?')}. Upgrade skprobae to load it."
                )
            weights = safetensors.torch.load(archive.read(_WEIGHTS)) if _WEIGHTS in names else {}
            arrays = safetensors.torch.load(archive.read(_ARRAYS)) if _ARRAYS in names else {}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a skprobae model file (not a zip archive).") from exc
    node = meta["estimator"]
    _version.warn_if_inconsistent(str(node.get("class")), meta.get("versions", {}).get("skprobae", "unknown"), "file")
    return _Reader(weights, arrays, device).estimator(node)


def _read_meta(path: PathLike) -> dict:
    """The JSON part of a saved model (for inspection and tests)."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(_META))


def _rewrite_meta(path: PathLike, edit: Callable[[dict], None]) -> None:
    """Edit the JSON part of a saved model in place (for tests of damaged or foreign files)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members[_META])
    edit(meta)
    members[_META] = json.dumps(meta).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
    Path(path).write_bytes(buffer.getvalue())
