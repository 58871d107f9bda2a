"""Machinery shared by every skprobae estimator.

Validation at the door, seeding, device choice, the seeded validation split,
training a module through :class:`~skprobae._net.LikelihoodNet`, batched
inference, and the outlier-detection contract of scikit-learn's
``IsolationForest`` (``contamination``, ``offset_``, ``decision_function``,
``predict``).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

from ._net import ClipGradNorm, LikelihoodNet, TensorBatches
from .distributions import OutputDistribution
from .nn import ACTIVATIONS, build_networks, parse_image_shape

_SEED_MAX = np.iinfo(np.int32).max
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _silent(*args, **kwargs) -> None:
    """A picklable sink that swallows skorch's callback messages."""


def draw_seed(random_state) -> int:
    """An integer seed from anything ``check_random_state`` accepts."""
    return int(check_random_state(random_state).randint(_SEED_MAX))


@contextlib.contextmanager
def torch_seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the body with torch's global RNG seeded, then restore the caller's RNG state.

    Module initialisation and ``torch.distributions`` sampling draw from the
    global generator; forking it keeps the user's own torch randomness intact.
    """
    device = torch.device(device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; check explicit choices."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}.") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    return device


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of a tensor, wherever it lives."""
    return tensor.detach().to("cpu", torch.float64).numpy()


class BaseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, OutlierMixin, BaseEstimator):
    """Base class of the autoencoder estimators; not for direct use.

    Subclasses list their hyperparameters in ``__init__`` (which only stores
    them), build a torch module in ``fit`` and train it with
    :meth:`_fit_module`. They implement ``score_samples``; this class turns it
    into ``score``, ``decision_function``, ``predict`` and ``offset_``.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "architecture": [StrOptions({"mlp", "conv"})],
        "image_shape": [tuple, list, None],
        "hidden_layer_sizes": [tuple, list],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "encoder": [callable, None],
        "decoder": [callable, None],
        "encoder_kwargs": [dict, None],
        "decoder_kwargs": [dict, None],
    }

    # ------------------------------------------------------------------ input
    def _validate_params_and_data(self, X) -> np.ndarray:
        """Check hyperparameters and the training matrix; set ``n_features_in_``."""
        self._validate_params()
        sizes = self.hidden_layer_sizes
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got {sizes!r}.")
        channels = getattr(self, "conv_channels", (1,))
        if not channels or not all(isinstance(c, Integral) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ValueError(f"conv_channels must be a non-empty tuple of positive integers, got {channels!r}.")
        X = self._check_X(X, reset=True)
        if self.image_shape is not None or self.architecture == "conv":
            parse_image_shape(self.image_shape, X.shape[1])
        return X

    def _build_networks(
        self, n_features: int, head: OutputDistribution, encoder_outputs: int | None = None
    ) -> tuple[nn.Module, nn.Module]:
        """Encoder and decoder: the user's ``encoder`` / ``decoder`` classes, else the built-in ``architecture``.

        A user class is called as ``encoder(n_features, encoder_outputs,
        **encoder_kwargs)`` and ``decoder(n_components, head.n_params,
        **decoder_kwargs)`` (the signature of ``torch.nn.Linear``); a probe
        pass checks that it maps rows to the right number of values.
        """
        k = self.n_components
        n_out = encoder_outputs or k
        custom = {
            "encoder": (getattr(self, "encoder", None), getattr(self, "encoder_kwargs", None), n_features, n_out),
            "decoder": (getattr(self, "decoder", None), getattr(self, "decoder_kwargs", None), k, head.n_params),
        }
        if custom["encoder"][0] is not None and custom["decoder"][0] is not None:
            encoder = decoder = None
        else:
            encoder, decoder = build_networks(
                self.architecture,
                n_features,
                k,
                head,
                self.hidden_layer_sizes,
                self.activation,
                self.image_shape,
                channels=tuple(getattr(self, "conv_channels", None) or (32, 64)),
                encoder_outputs=encoder_outputs,
            )
        built = {"encoder": encoder, "decoder": decoder}
        for role, (factory, kwargs, n_in, n_expected) in custom.items():
            if factory is None:
                continue
            if isinstance(factory, nn.Module):
                raise TypeError(
                    f"{role} must be a torch.nn.Module class (or a function returning a module), not an instance: "
                    f"the estimator builds a fresh one in every fit. Pass {type(factory).__name__} and its "
                    f"arguments as {role}_kwargs."
                )
            try:
                module = factory(n_in, n_expected, **(kwargs or {}))
            except TypeError as exc:
                raise TypeError(
                    f"{role}={getattr(factory, '__name__', factory)!r} could not be built as "
                    f"{role}({n_in}, {n_expected}, **{role}_kwargs): {exc}"
                ) from exc
            if not isinstance(module, nn.Module):
                raise TypeError(f"{role} must build a torch.nn.Module, got {type(module).__name__}.")
            self._check_network_output(role, module, n_in, n_expected, head)
            built[role] = module
        return built["encoder"], built["decoder"]

    def _check_network_output(
        self, role: str, module: nn.Module, n_in: int, n_expected: int, head: OutputDistribution
    ) -> None:
        dtype = next(module.parameters(), torch.empty(0)).dtype
        training = module.training
        module.eval()  # the probe must not touch batch-norm statistics
        with torch.no_grad():
            try:
                output = module(torch.zeros(2, n_in, dtype=dtype))
            except Exception as exc:
                raise ValueError(f"The custom {role} fails on a batch of shape (2, {n_in}): {exc}") from exc
            finally:
                module.train(training)
        if tuple(output.shape) == (2, n_expected):
            return
        if role == "encoder":
            need = f"{n_expected} (n_components={self.n_components}" + (
                ", means and scales)" if n_expected != self.n_components else ")"
            )
        else:
            name = getattr(self, "distribution", type(head).__name__)
            need = f"{n_expected} (the raw parameters of distribution {name!r} over {head.n_features} features)"
        raise ValueError(
            f"The custom {role} maps a batch of shape (2, {n_in}) to shape {tuple(output.shape)}; "
            f"it must return (2, {n_expected}): {need}."
        )

    def _check_X(self, X, reset: bool = False) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.ndim > 2:
            X = self._flatten_images(X)
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        if X.size and np.abs(X).max() > _FLOAT32_MAX:
            raise ValueError(
                "X has values beyond the float32 range (|x| > 3.4e38) that the network cannot represent; "
                "rescale X, e.g. with StandardScaler."
            )
        return X

    def _check_codes(self, Z) -> np.ndarray:
        """Latent codes for ``inverse_transform``: 2-D, finite, ``n_components`` columns."""
        Z = check_array(Z, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but {type(self).__name__} has n_components={self.n_components}."
            )
        return Z

    @staticmethod
    def _check_n_samples(n_samples) -> int:
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        return int(n_samples)

    @staticmethod
    def _check_temperature(temperature) -> float:
        if not isinstance(temperature, Real) or isinstance(temperature, bool) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
        return float(temperature)

    def _flatten_images(self, X: np.ndarray) -> np.ndarray:
        """Accept ``(n, C, H, W)`` or ``(n, H, W)`` arrays matching ``image_shape`` as flat rows."""
        if self.image_shape is None:
            raise ValueError(f"X has shape {X.shape}; pass 2-D rows, or set image_shape to fit images.")
        expected = parse_image_shape(self.image_shape, int(np.prod(X.shape[1:])))
        if X.shape[1:] not in (tuple(self.image_shape), expected, expected[1:]):
            raise ValueError(f"X has images of shape {X.shape[1:]}, but image_shape is {tuple(self.image_shape)}.")
        return X.reshape(len(X), -1)

    # --------------------------------------------------------------- training
    def _split(self, n_samples: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """Seeded train/validation indices according to ``validation_fraction``."""
        n_valid = math.ceil(self.validation_fraction * n_samples) if self.validation_fraction > 0 else 0
        if n_valid and n_samples - n_valid < 1:
            warnings.warn(
                f"{type(self).__name__}: {n_samples} sample(s) are too few for validation_fraction="
                f"{self.validation_fraction}; training on all of them without a validation split.",
                UserWarning,
                stacklevel=3,
            )
            n_valid = 0
        order = rng.permutation(n_samples)
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    def _callbacks(self, has_validation: bool) -> list:
        callbacks = []
        if self.n_iter_no_change is not None:
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss" if has_validation else "train_loss",
                        patience=self.n_iter_no_change,
                        threshold=1e-4,
                        threshold_mode="abs",
                        load_best=True,
                        sink=_silent,
                    ),
                )
            )
        if self.max_grad_norm is not None:
            callbacks.append(("gradient_clipping", ClipGradNorm(self.max_grad_norm)))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks

    def _fit_module(
        self, build_module: Callable[[], nn.Module], X: np.ndarray
    ) -> tuple[np.random.RandomState, np.ndarray, np.ndarray]:
        """Build and train the main module on ``X``; sets ``net_``, ``history_``, ``n_iter_``.

        ``build_module`` runs under the estimator's seed, so weight
        initialisation is reproducible. Returns the random state the rest of
        ``fit`` should draw from and the training and validation row indices.
        """
        rng = check_random_state(self.random_state)
        train_idx, valid_idx = self._split(len(X), rng)
        seed = int(rng.randint(_SEED_MAX))
        device = resolve_device(self.device)
        with torch_seeded(seed, device):
            module = build_module()
            self._inference_batch_size = self._batch_size_for(module)
            X_tensor = torch.tensor(X, dtype=torch.float32, device=device)
            net = self._train_net(
                module,
                X_tensor[train_idx],
                X_tensor[valid_idx] if len(valid_idx) else None,
                seed=seed,
                device=device,
                max_epochs=self.max_epochs,
                learning_rate=self.learning_rate,
            )
        self.net_ = net
        self.history_ = net.history
        self.n_iter_ = len(net.history)
        self._n_features_out = self.n_components
        return rng, train_idx, valid_idx

    def _train_net(
        self,
        module: nn.Module,
        X_train: torch.Tensor,
        X_valid: torch.Tensor | None,
        *,
        seed: int,
        device: str,
        max_epochs: int,
        learning_rate: float,
    ) -> LikelihoodNet:
        """Train ``module`` on ``module.loss(module(X), X)`` with the shared callbacks.

        Batch size, weight decay, early stopping, clipping and verbosity come
        from the estimator's parameters. Afterwards the module is in eval mode
        and float64: trained in float32, evaluated in float64 (the upcast is
        exact, and float64 outputs do not depend on how rows are batched).
        """
        net = LikelihoodNet(
            module,
            criterion=nn.Identity,  # unused: LikelihoodNet.get_loss asks the module
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=self.weight_decay,
            lr=learning_rate,
            max_epochs=max_epochs,
            batch_size=self.batch_size,
            iterator_train=TensorBatches,
            iterator_train__shuffle=True,
            iterator_train__generator=torch.Generator().manual_seed(seed),
            iterator_valid=TensorBatches,
            iterator_valid__batch_size=self._inference_batch_size,
            train_split=predefined_split(Dataset(X_valid)) if X_valid is not None else None,
            callbacks=self._callbacks(X_valid is not None),
            device=device,
            verbose=self.verbose,
            owner=type(self).__name__,
        )
        net.fit(X_train)
        net.module_.eval().to(torch.float64)
        return net

    @staticmethod
    def _batch_size_for(module: nn.Module) -> int:
        """Rows per inference batch: keeps the decoded distribution near 2**24 floats."""
        cost = getattr(getattr(module, "head", None), "inference_cost", 1024)
        return int(max(1, min(4096, 2**24 // max(1, cost))))

    # -------------------------------------------------------------- inference
    @property
    def _device(self) -> str:
        return self.net_.device

    def _batches(self, X: np.ndarray) -> Iterator[torch.Tensor]:
        """float64 tensors of consecutive rows of ``X`` on the model's device."""
        size = self._inference_batch_size
        for start in range(0, len(X), size):
            yield torch.tensor(X[start : start + size], dtype=torch.float64, device=self._device)

    def _map_batches(self, fn: Callable, X: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """Apply ``fn`` to batches of ``X`` without gradients; concatenate as float64 numpy."""
        outputs = []
        with torch.no_grad():
            for batch in self._batches(X):
                out = fn(batch)
                outputs.append(tuple(map(to_numpy, out)) if isinstance(out, tuple) else to_numpy(out))
        if isinstance(outputs[0], tuple):
            return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=False))
        return np.concatenate(outputs)

    # ---------------------------------------------------------- outlier contract
    _offset_max_rows = 20_000

    def _offset_rows(self, X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Training rows for ``offset_``: all, or a seeded subsample of ``_offset_max_rows`` when scoring is costly."""
        if len(X) <= self._offset_max_rows:
            return X
        return X[np.sort(rng.permutation(len(X))[: self._offset_max_rows])]

    def _offset_from(self, training_scores: np.ndarray) -> float:
        """The ``contamination`` quantile of the training scores, which must be finite."""
        bad = ~np.isfinite(training_scores)
        if bad.any():
            raise FloatingPointError(
                f"{type(self).__name__}: the fitted model gives non-finite scores on {int(bad.sum())} "
                "training rows. Standardize X, lower learning_rate or choose a simpler distribution."
            )
        return float(np.percentile(training_scores, 100.0 * self.contamination))

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """Scores of validated ``X``; subclasses implement it."""
        raise NotImplementedError

    def score_samples(self, X) -> np.ndarray:
        """Per-sample score, higher for more normal data (see the subclass)."""
        check_is_fitted(self)
        return self._score_samples(self._check_X(X))

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples`; ``GridSearchCV`` maximises it by default.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``decision_function < 0``)."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
