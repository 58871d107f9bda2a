"""The vanilla probabilistic autoencoder (Ciobanu, 2021)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from .._base import BaseAutoencoder, Split, draw_seed, head_point_and_std, torch_seeded
from .._table import table_output
from ..distributions import DISTRIBUTION_NAMES
from ..nn import Autoencoder, GaussianPrior


class ProbabilisticAutoencoder(BaseAutoencoder):
    r"""Autoencoder trained on the negative log-likelihood of an output distribution.

    The decoder outputs the parameters of a distribution ``p(x | f(x))`` over
    the input instead of a single reconstruction: a normal or Student-t with
    identity, diagonal or full (Cholesky) scale, or a mixture of ``n_mixtures``
    of any of them. The model then gives a point reconstruction, its
    per-feature uncertainty, mixture components, samples, and a log-likelihood
    to score (and flag) unusual rows.

    ``score_samples`` is the log-likelihood :math:`\log p(x \mid f(x))` of
    each row under its own reconstruction (higher means more typical): the
    reconstruction likelihood, not the marginal density of ``x`` (for that,
    see ``PAE`` or ``AEF``). ``reconstruct(X, return_std=True)`` gives the
    std of that distribution: 1 for ``"mse"`` and ``"normal"``, NaN for
    Student-t outputs whose ``df <= 2`` (no finite variance), the mixture's
    std for mixtures. ``sample`` decodes codes drawn from a Gaussian fitted to
    the training codes (``latent_mean_``, ``latent_covariance_``).

    Read more in the paper: S. Ciobanu, *Vanilla Probabilistic Autoencoder*,
    CAINE 2021.

    Parameters
    ----------
    distribution : str, default="normal_diag"
        Output family, one of ``skprobae.distributions.available_distributions()``:
        ``"mse"`` (plain autoencoder: squared-error loss, unit-variance normal
        density), ``"normal"`` (unit variance), ``"normal_diag"``,
        ``"normal_full"``, ``"t"``, ``"t_diag"``, ``"t_full"``; ``"maf"``
        (a masked autoregressive flow whose base is centred on the decoder
        output); and, for one-channel images (``image_shape``),
        ``"matrix_normal"``, ``"matrix_normal_diag"``, ``"matrix_normal_full"``,
        ``"matrix_t"``, ``"matrix_t_diag"``, ``"matrix_t_full"`` (row and
        column scales: identity, diagonal or Cholesky). Full scales need
        ``d (d + 1) / 2`` decoder outputs per component; the matrix families
        ``H (H + 1) / 2 + W (W + 1) / 2``.
    n_mixtures : int, default=1
        Number of mixture components K; softmax weights are decoded too.
    distribution_options : dict or None, default=None
        Options of the output family: ``"maf"`` takes ``n_point_samples``
        (draws averaged for the point estimate, default 50),
        ``transforms`` (default 1) and ``hidden_layer_sizes`` (default
        ``(10,)``); the other families take none.
    n_components : int or "auto", default="auto"
        Latent dimension. ``"auto"`` chooses it from the training data: the
        number of principal components that keep 90% of the variance of the
        standardized rows (categories one-hot, missing entries at the mean),
        at most ``n_features - 1`` (for images, 8; see
        ``n_components_``). An explicit value above ``n_features`` warns.
    categorical_features : "from_dtype", None, array-like of int, str or bool, default="from_dtype"
        Categorical columns, modelled by a categorical distribution (a
        Bernoulli for two categories) instead of ``distribution``; the
        encoder sees them one-hot. ``"from_dtype"``: the ``category``,
        ``object``, ``string`` and ``bool`` columns of a DataFrame (none of
        an array); else column indices, names or a boolean mask, as in
        ``HistGradientBoostingClassifier``. Their values may be anything
        hashable; ``reconstruct``, ``sample`` and ``inverse_transform``
        return the categories (a DataFrame with the fitted dtypes when fitted
        on one), :meth:`predict_category_proba` their probabilities. A
        category not seen in fit raises a ValueError naming the column.
    standardize : bool, default=True
        Standardize each continuous column inside the model with the mean
        and std of its observed training values (near-constant columns are
        left as they are). ``score_samples`` stays a log-likelihood in the
        units of ``X`` (the log-determinant of the standardization is
        included), so no ``StandardScaler`` is needed in front. Not applied
        to images (``image_shape`` or ``architecture="conv"``), whose pixels
        share one scale.
    mask_fraction : float in [0, 1), default=0.0
        Share of the observed entries of each training row hidden from the
        encoder at each step (as if missing; drawn anew every batch), while
        the likelihood still scores them: the model learns to predict the
        entries it does not see, as denoising and MIWAE-style imputers are
        trained. Useful when rows will be scored or imputed with missing
        entries; turns on the missingness indicators. Tables only.
    architecture : {"mlp", "conv"}, default="mlp"
        ``"conv"``: two stride-2 3x3 convolutions (32, 64 channels) before the
        fully connected layers, mirrored by transposed convolutions that emit
        the per-pixel parameters; needs ``image_shape``.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` of one row, for image data. Rows stay flat
        (``n_features = C * H * W``); arrays of shape ``(n, C, H, W)`` or
        ``(n, H, W)`` are accepted and flattened.
    hidden_layer_sizes : tuple of int, default=(128,)
        Encoder hidden widths (after the convolutions for ``"conv"``); the
        decoder mirrors them.
    activation : {"relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"}, default="relu"
        Hidden-layer nonlinearity.
    max_epochs : int, default=100
        Upper bound on training epochs.
    batch_size : int, default=128
        Mini-batch size; smaller data sets train in one batch.
    learning_rate : float, default=1e-3
        Adam step size.
    weight_decay : float, default=0.0
        Adam's L2 penalty.
    validation_fraction : float, default=0.1
        Share of rows held out (seeded) to monitor early stopping; 0 monitors
        the training loss instead.
    n_iter_no_change : int or None, default=10
        Stop after this many epochs without improvement of the monitored loss
        and restore the best weights; None trains ``max_epochs`` epochs.
    max_grad_norm : float or None, default=100.0
        Clip the gradient norm to this value; None disables clipping.
    encoder, decoder : torch.nn.Module class or callable, default=None
        Your own networks instead of the built-in ``architecture`` (either
        or both). They are built in every ``fit`` as ``encoder(n_features,
        n_outputs, **encoder_kwargs)`` and ``decoder(n_components, n_params,
        **decoder_kwargs)``, the signature of ``torch.nn.Linear``, and map a
        batch ``(n, n_in)`` to ``(n, n_out)``. ``n_outputs`` is
        ``n_components``; ``n_params`` is the number of raw values
        the output distribution needs. A module with the wrong output size
        raises a ValueError saying what was expected.
    encoder_kwargs, decoder_kwargs : dict or None, default=None
        Keyword arguments of ``encoder`` and ``decoder`` (tunable like any
        parameter, e.g. in ``GridSearchCV``).
    inference_dtype : {"float32", "float64"}, default="float32"
        dtype the networks compute in after fit; log-density reductions are
        float64 either way and every output is a float64 array.
        ``"float64"`` is the exact mode (about half the speed on a CPU, far
        slower on most GPUs).
    mixed_precision : {"bf16", "fp16"} or None, default=None
        Train under ``torch.autocast`` in bfloat16 or float16 (with a
        gradient scaler); meant for GPUs.
    n_threads : int or None, default=None
        torch intra-op threads inside this estimator's calls (restored
        afterwards). None chooses from the work per batch: one thread for
        small models (which keeps them fast on a shared machine), more as
        the work grows, at most ``torch.get_num_threads()`` and the cores
        other processes leave free when the call (or training stage) starts;
        -1 uses every core this process may use.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``), or ``"auto"`` for a GPU when
        one is visible. Changing it after fit moves the model.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, weight initialisation and shuffling; with
        an int two fits on CPU are identical.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar over the epochs and says where
        training stopped, why, and which epoch's weights were kept; 2 also
        prints a table of the losses of every epoch.
    contamination : float or "auto", default=0.1
        Expected share of outliers in the training data, in (0, 0.5]:
        ``offset_`` is that quantile of the training scores. ``"auto"``
        needs no guess: ``offset_`` is Tukey's lower fence ``Q1 - 1.5 IQR``
        of the training scores, so ``predict`` flags the rows whose
        log-likelihood lies unusually far below the bulk of the training
        rows' (for Gaussian scores, about 0.35% of them).
    warm_start : bool, default=False
        When fitted, ``fit`` continues training from the current weights and
        optimizer state instead of starting over (as in ``MLPRegressor``);
        see also :meth:`partial_fit`.
    accelerator : dict, bool or None, default=None
        Train data-parallel over the processes of a distributed launch
        (``accelerate launch``, ``torchrun``) through Hugging Face
        accelerate and skorch's ``AccelerateMixin``: the keyword arguments
        of an ``accelerate.Accelerator`` built at ``fit`` (``True``: its
        defaults; e.g. ``{"cpu": True}``, ``{"mixed_precision": "bf16"}``).
        ``batch_size`` stays the global batch: each process takes its share
        of every batch. The fitted model is a plain one on every process
        (it pickles and loads without accelerate). Needs the ``scale`` extra.

    Attributes
    ----------
    n_components_ : int
        The latent dimension used (``n_components``, or its ``"auto"`` choice).
    is_categorical_ : ndarray of bool of shape (n_features,)
        Which columns are categorical.
    categories_ : list of ndarray
        The categories of each categorical column, in column order (their
        codes 0, 1, ... index these arrays).
    feature_loc_, feature_scale_ : ndarray of shape (n_features,)
        The standardization of the continuous columns (0 and 1 for the others
        and with ``standardize=False``).
    missing_indicators_ : bool
        Whether the encoder also sees each row's missingness mask (the
        training data had missing entries, or ``mask_fraction_ > 0``;
        zero-filled values otherwise).
    mask_fraction_ : float
        The share of observed entries hidden from the encoder in training.
    net_ : skorch.NeuralNet
        The trained network (``net_.module_`` is the torch module).
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss`` (mean negative
        log-likelihood per row; for ``"mse"`` the mean squared error) and
        ``dur``.
    n_iter_ : int
        Epochs run.
    latent_mean_ : ndarray of shape (n_components,)
        Mean of the training codes; with ``latent_covariance_`` the Gaussian
        that :meth:`sample` draws codes from.
    latent_covariance_ : ndarray of shape (n_components, n_components)
        Covariance of the training codes.
    offset_ : float
        The ``contamination`` quantile of the training scores.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features,)
        Names of features seen during fit, when X had string column names.

    See Also
    --------
    sklearn.decomposition.PCA : The linear, closed-form cousin.
    sklearn.ensemble.IsolationForest : The outlier-detection contract followed here.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skprobae import ProbabilisticAutoencoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> model = make_pipeline(
    ...     StandardScaler(), ProbabilisticAutoencoder(max_epochs=5, random_state=0)
    ... ).fit(X)
    >>> model[-1].n_components_  # "auto": 90% of the standardized digits' variance
    31
    >>> model.transform(X[:3]).shape
    (3, 31)
    >>> model.score_samples(X[:3]).dtype
    dtype('float64')
    """

    _default_image_components = 8

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", str, None],
        "standardize": ["boolean"],
        "mask_fraction": [Interval(Real, 0, 1, closed="left")],
        "distribution": [StrOptions(DISTRIBUTION_NAMES)],
        "distribution_options": [dict, None],
        "n_mixtures": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        distribution="normal_diag",
        n_mixtures=1,
        n_components="auto",
        categorical_features="from_dtype",
        standardize=True,
        mask_fraction=0.0,
        architecture="mlp",
        image_shape=None,
        hidden_layer_sizes=(128,),
        activation="relu",
        max_epochs=100,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=0.0,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_grad_norm=100.0,
        distribution_options=None,
        encoder=None,
        decoder=None,
        encoder_kwargs=None,
        decoder_kwargs=None,
        inference_dtype="float32",
        mixed_precision=None,
        n_threads=None,
        device="auto",
        random_state=None,
        verbose=0,
        contamination=0.1,
        warm_start=False,
        accelerator=None,
    ):
        self.distribution = distribution
        self.n_mixtures = n_mixtures
        self.n_components = n_components
        self.categorical_features = categorical_features
        self.standardize = standardize
        self.mask_fraction = mask_fraction
        self.architecture = architecture
        self.image_shape = image_shape
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_grad_norm = max_grad_norm
        self.distribution_options = distribution_options
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_kwargs = encoder_kwargs
        self.decoder_kwargs = decoder_kwargs
        self.inference_dtype = inference_dtype
        self.mixed_precision = mixed_precision
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.contamination = contamination
        self.warm_start = warm_start
        self.accelerator = accelerator

    def _build_module(self, X: np.ndarray) -> Autoencoder:
        head = self._make_head(X.shape[1])
        encoder, decoder, inputs = self._table_networks(head)
        return Autoencoder(encoder, decoder, head, inputs)

    def _fit_rest(self, X: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        """``latent_mean_`` and ``latent_covariance_`` of the codes of every training row (one streamed pass).

        Weighted by ``sample_weight`` in a weighted fit.
        """
        K, n = self.n_components_, self._rows_total(len(X))
        self.latent_mean_, scatter = self._mean_and_scatter_over_rows(
            "transform", lambda x: self._encode(x).double(), X
        )
        self.latent_covariance_ = scatter / (n - 1) if n > 1 else np.zeros((K, K))

    # ------------------------------------------------------------------- hooks
    @property
    def _module(self) -> Autoencoder:
        return self.net_.module_

    def _encode(self, x: Tensor) -> Tensor:
        return self._module.encode(x)

    def _decode(self, z: Tensor) -> Tensor:
        return self._module.decode(z)

    def _reconstruct(self, x: Tensor, return_std: bool):
        return head_point_and_std(self._module.head, self._reconstruction_params(x), return_std)

    @property
    def _prior(self) -> GaussianPrior:
        return GaussianPrior.from_covariance(self.latent_mean_, self.latent_covariance_).to(self._device)

    def _log_density(self, x: Tensor) -> Tensor:
        return self._module.log_prob(x)

    # ------------------------------------------------------------------ public
    def predict_components(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Each mixture component's point estimate and log-weight for every row.

        Without a mixture, K = 1 and the log-weight is 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to reconstruct.

        Returns
        -------
        points : ndarray of shape (n_samples, n_mixtures, n_features)
            Each component's point estimate of the reconstruction.
        log_weights : ndarray of shape (n_samples, n_mixtures)
            The components' log mixture weights (each row's weights sum to 1).
        """
        check_is_fitted(self)
        module = self._module
        return self._run(
            "components", lambda x: module.head.components(module.decoder_params(module.encode(x))), self._check_X(X)
        )

    def sample_reconstructions(self, X, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws from ``p(x_rec | x)`` for every row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            The rows whose reconstruction distribution is sampled.
        n_samples : int, default=1
            Draws per row.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; with an int two calls are identical.

        Returns
        -------
        samples : ndarray of shape (n_rows, n_samples, n_features)
        """
        check_is_fitted(self)
        X = self._check_X(X)
        n_samples = self._check_n_samples(n_samples)
        module = self._module

        def draw(x: Tensor) -> Tensor:
            return module.head.sample_values(module.decoder_params(module.encode(x)), n_samples).movedim(0, 1)

        with torch_seeded(draw_seed(random_state), self._device):
            draws = self._run(f"sample_reconstructions_{n_samples}", draw, X)
        if not self.is_categorical_.any():
            return draws
        values = table_output(self, draws.reshape(-1, draws.shape[-1]))
        if isinstance(values, np.ndarray):
            return values.reshape(draws.shape)
        return values
