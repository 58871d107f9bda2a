"""The probabilistic autoencoder of Böhm & Seljak: an autoencoder, then a flow on its codes."""

from __future__ import annotations

import copy
import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from .._base import BaseAutoencoder, Split, draw_seed, torch_generator
from .._engine import iter_blocks
from .._table import observed_column_sums, table_output
from ..distributions import DISTRIBUTION_NAMES
from ..distributions._base import sum_features
from ..flows import FLOW_NAMES, FlowAdapter, build_flow
from ..nn import Autoencoder, FlowPrior
from ..nn._prior import LOG_2PI
from ._posterior import CategoricalColumns, PosteriorSettings, jacobian_columns, posterior_draws

SCORE_METHODS = ("combined", "latent", "reconstruction", "laplace")
_DEFAULT_LAPLACE_MAP_STEPS = 100


class PAE(BaseAutoencoder):
    r"""Probabilistic autoencoder: an autoencoder with a normalizing-flow prior on its codes.

    Training has two stages. (1) An autoencoder ``x -> z = f(x) -> g(z)`` is
    trained (squared error by default). (2) With the autoencoder frozen, a
    normalizing flow ``b`` is fitted to the standardized codes of the training
    rows (with a small Gaussian jitter). The pair is a generative model:
    ``x = g(b^{-1}(u))``, ``u ~ N(0, I)``, with Gaussian reconstruction noise of
    per-feature scale ``sigma_`` measured on held-out rows.

    ``score_samples`` offers the paper's outlier scores (``score_method``):

    - ``"combined"`` (Eq. 12): :math:`\log \mathcal{N}(x; g(z), \sigma^2) +
      \log p_\text{flow}(z)`, the joint density at ``z`` (constants included);
    - ``"latent"``: :math:`\log p_\text{flow}(z)` only, best at large latent
      sizes;
    - ``"reconstruction"``: the sigma-weighted reconstruction term only, best
      at small latent sizes;
    - ``"laplace"`` (Eq. 11): the Laplace estimate of :math:`\log p(x)` at the
      MAP code, adding :math:`\tfrac{K}{2}\log 2\pi - \tfrac12\log\det H` with
      the Gauss-Newton Hessian :math:`H = J_b^\top J_b + J_g^\top
      \sigma^{-2} J_g` (Eq. 10), from batched forward-mode Jacobians.

    Every score includes the log-determinant of the code standardization, so
    ``"latent"`` is the density of the raw codes.

    Read more: V. Böhm and U. Seljak, *Probabilistic Auto-Encoder*, TMLR 2022.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Latent dimension. ``"auto"`` chooses it from the training data: the
        number of principal components that keep 90% of the variance of the
        standardized rows (categories one-hot, missing entries at the mean),
        at most ``n_features - 1`` (for images, 16; see
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
    mask_fraction : float in [0, 1) or "auto", default="auto"
        Share of the observed entries of each training row hidden from the
        encoder at each step (as if missing; drawn anew every batch), while
        the likelihood still scores them: the model learns to predict each
        entry from the others, as denoising and MIWAE-style models are
        trained, so a row whose values are each typical but whose
        combination is not (a dependency anomaly) scores low. Turns on the
        missingness indicators. ``"auto"``: 0.3 on tables, 0 on images
        (``image_shape`` or ``architecture="conv"``, where a hidden pixel
        would read as black). The value used is ``mask_fraction_``.
    architecture : {"mlp", "conv"}, default="mlp"
        Encoder/decoder family; ``"conv"`` needs ``image_shape``.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(C, H, W)`` of one row, for image data.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Encoder hidden widths; the decoder mirrors them.
    activation : str, default="relu"
        Hidden-layer nonlinearity.
    distribution : str, default="mse"
        Output distribution of the stage-1 autoencoder (any registered name);
        its point estimate is ``g(z)``.
    n_mixtures : int, default=1
        Mixture components of that distribution.
    flow : {"auto", "realnvp", "maf", "nsf"} or flow object, default="auto"
        The latent flow: ``"auto"`` is RealNVP up to K = 32 and a neural spline
        flow above. A zuko flow (``zuko.flows.Flow``) or an nflows ``Flow`` over
        K dimensions with a standard-normal base may be passed instead; it is
        copied, not modified.
    flow_transforms : int or None, default=None
        Number of flow transforms (None: 8 for RealNVP, 4 otherwise).
    flow_hidden_layer_sizes : tuple of int or "auto", default="auto"
        Hidden widths of each flow transform's network. ``"auto"``: (64, 64)
        on tables, whose codes are low-dimensional (``n_components="auto"``
        keeps 90% of the variance) and few; (128, 128) on images
        (``image_shape`` or ``architecture="conv"``), as in the PAE paper.
        On the ten ODDS tables the narrower flow fits in about two thirds of
        the time at the same mean AUROC.
    flow_max_epochs : int, default=200
        Upper bound on flow training epochs (early stopping as for the autoencoder).
    flow_learning_rate : float, default=3e-3
        Adam step size of the flow (its loss is a smooth density on
        standardized codes, which takes larger steps than the autoencoder's).
    flow_batch_size : int or None, default=1024
        Mini-batch size of the flow; None uses ``batch_size``. The flow's
        inputs are K-dimensional codes, whose steps at a few hundred rows
        cost mostly fixed per-operation overheads: on ODDS-sized tables
        1,024 rows train the flow about 1.5x faster per epoch than 128 (the
        AUROC of ``benchmarks/odds.py`` did not change beyond seed noise).
    latent_noise : float, default=0.02
        Std of the Gaussian jitter added to the standardized codes while
        training the flow.
    score_method : {"combined", "latent", "reconstruction", "laplace"}, default="combined"
        What :meth:`score_samples` returns (see above).
    map_steps : int or None, default=None
        Adam steps refining each code to the MAP of Eq. 9 before scoring
        (batched, in standardized latent space). None means 0, or 100 for
        ``"laplace"``, which needs the MAP.
    map_learning_rate : float, default=0.05
        Adam step size of that refinement.
    max_epochs, batch_size, learning_rate, weight_decay, validation_fraction, max_grad_norm
        Training settings shared by both stages (see
        :class:`~skprobae.ProbabilisticAutoencoder`); the held-out rows also
        give ``sigma_``.
    n_iter_no_change : int or None, default=3
        Each stage stops after this many epochs without improvement of the
        monitored loss and keeps its best epoch; None trains ``max_epochs``
        (``flow_max_epochs``) epochs. Lower than
        ``ProbabilisticAutoencoder``'s 10: PAE trains two stages, twice with
        ``refit_on_inliers``, and the best epoch is kept anyway (on the ten
        ODDS tables, 3 seeds, the same mean AUROC as 10 in a fraction of the
        time; see the "Fit cost" benchmark).
    distribution_options, encoder, decoder, encoder_kwargs, decoder_kwargs
        As for :class:`~skprobae.ProbabilisticAutoencoder`.
    inference_dtype, mixed_precision, n_threads
        As for :class:`~skprobae.ProbabilisticAutoencoder`; they apply to both stages.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"``, or ``"auto"``; changing it after fit moves the model.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, initialisation, shuffling and jitter.
    verbose : int, default=0
        0 is silent; 1 and 2 report the training of both stages, as for
        :class:`~skprobae.ProbabilisticAutoencoder`.
    contamination : float or "auto", default=0.1
        Expected share of outliers; sets ``offset_`` (``"auto"``: Tukey's
        lower fence of the training scores, see
        :class:`~skprobae.ProbabilisticAutoencoder`).
    refit_on_inliers : bool, default=True
        Fit twice: a short fit (a tenth of ``max_epochs`` and
        ``flow_max_epochs``, on at most 8192 training rows, a seeded subset:
        it only ranks the rows, as FastMCD starts from subsets), then
        a full fit from scratch with weight 0 on the training rows the first
        fit flags as outliers (score below its ``offset_``, so
        ``contamination`` sets their share). A trimmed likelihood, as the
        C-steps of :class:`~sklearn.covariance.MinCovDet` refit on the most
        central rows: without it a cluster of anomalies in the training data
        is learned as one more mode and scores as normal. ``offset_`` is then
        the ``contamination`` quantile of the refitted model's scores of
        *all* training rows, and ``n_refit_outliers_`` counts the rows left
        out. Adds about a third to the fit time; ``False`` fits once, as a
        density model of all rows. ``partial_fit`` and ``warm_start``
        continuations train on the given weights only. For novelty detection
        on training data known to be clean, prefer ``False``: leaving out the
        least typical clean rows narrows the model (one class of MNIST against
        the others, 1000 training images: mean AUROC 0.863 with the refit,
        0.889 without; ten ODDS tables, which hold outliers: 0.886 with it,
        0.874 without).
    warm_start, accelerator
        As for :class:`~skprobae.ProbabilisticAutoencoder` (both stages
        continue, or train data-parallel).

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
        The share of observed entries hidden from the encoder in training
        (``mask_fraction``, or its ``"auto"`` choice).
    net_ : skorch.NeuralNet
        The autoencoder (stage 1).
    flow_net_ : skorch.NeuralNet
        The latent flow (stage 2); ``flow_net_.module_.flow`` is a
        :class:`~skprobae.flows.FlowAdapter`.
    history_, flow_history_ : skorch.History
        Per-epoch losses of each stage.
    n_iter_ : int
        Autoencoder epochs run.
    latent_mean_, latent_scale_ : ndarray of shape (n_components,)
        Standardization of the codes the flow sees.
    feature_mean_ : ndarray of shape (n_features,)
        Training means; the first posterior start fills missing entries with them.
    feature_bounds_ : ndarray of shape (2, n_features)
        Training minimum and maximum of each feature widened by 10% of the
        range; posterior draws are clipped to them.
    sigma_ : ndarray of shape (n_features,)
        Per-feature root-mean-square reconstruction error on the held-out
        rows (the training rows when ``validation_fraction=0``), floored at
        1% of its overall RMS.
    offset_ : float
        The ``contamination`` quantile of the training scores under the
        current ``score_method`` (see the property's docstring).
    offsets_ : dict
        Those quantiles keyed by ``(score_method, map_steps)``.
    n_refit_outliers_ : int
        Training rows that ``refit_on_inliers`` left out of the second fit (0
        when it did not refit).
    n_features_in_ : int

    See Also
    --------
    ProbabilisticAutoencoder : The autoencoder alone, with a likelihood per row.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skprobae import PAE
    >>> X = load_digits().data / 16
    >>> pae = PAE(n_components=8, max_epochs=10, flow_max_epochs=10, random_state=0).fit(X)
    >>> pae.sample(4, random_state=0).shape
    (4, 64)
    >>> pae.score_samples(X[:3]).shape
    (3,)
    """

    _final_stage = "latent flow"

    _default_image_components = 16
    _auto_mask_fraction = 0.3

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", str, None],
        "standardize": ["boolean"],
        "mask_fraction": [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})],
        "distribution": [StrOptions(DISTRIBUTION_NAMES)],
        "distribution_options": [dict, None],
        "n_mixtures": [Interval(Integral, 1, None, closed="left")],
        "flow": [StrOptions(set(FLOW_NAMES)), nn.Module],
        "flow_transforms": [Interval(Integral, 1, None, closed="left"), None],
        "flow_hidden_layer_sizes": [tuple, list, StrOptions({"auto"})],
        "flow_max_epochs": [Interval(Integral, 1, None, closed="left")],
        "flow_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "flow_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "latent_noise": [Interval(Real, 0, None, closed="left")],
        "refit_on_inliers": ["boolean"],
        "score_method": [StrOptions(set(SCORE_METHODS))],
        "map_steps": [Interval(Integral, 0, None, closed="left"), None],
        "map_learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_components="auto",
        categorical_features="from_dtype",
        standardize=True,
        mask_fraction="auto",
        architecture="mlp",
        image_shape=None,
        hidden_layer_sizes=(256, 128),
        activation="relu",
        distribution="mse",
        n_mixtures=1,
        flow="auto",
        flow_transforms=None,
        flow_hidden_layer_sizes="auto",
        flow_max_epochs=200,
        flow_learning_rate=3e-3,
        flow_batch_size=1024,
        latent_noise=0.02,
        score_method="combined",
        map_steps=None,
        map_learning_rate=0.05,
        max_epochs=100,
        batch_size=128,
        learning_rate=1e-3,
        weight_decay=0.0,
        validation_fraction=0.1,
        n_iter_no_change=3,
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
        refit_on_inliers=True,
        warm_start=False,
        accelerator=None,
    ):
        self.n_components = n_components
        self.categorical_features = categorical_features
        self.standardize = standardize
        self.mask_fraction = mask_fraction
        self.architecture = architecture
        self.image_shape = image_shape
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.distribution = distribution
        self.n_mixtures = n_mixtures
        self.flow = flow
        self.flow_transforms = flow_transforms
        self.flow_hidden_layer_sizes = flow_hidden_layer_sizes
        self.flow_max_epochs = flow_max_epochs
        self.flow_learning_rate = flow_learning_rate
        self.flow_batch_size = flow_batch_size
        self.latent_noise = latent_noise
        self.score_method = score_method
        self.map_steps = map_steps
        self.map_learning_rate = map_learning_rate
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
        self.refit_on_inliers = refit_on_inliers
        self.warm_start = warm_start
        self.accelerator = accelerator

    # -------------------------------------------------------------------- fit
    def _check_score_settings(self) -> int:
        """MAP steps to run for the configured score; rejects unsupported combinations."""
        if self.map_steps is None:
            return _DEFAULT_LAPLACE_MAP_STEPS if self.score_method == "laplace" else 0
        if self.score_method == "laplace" and self.map_steps == 0:
            raise ValueError(
                "score_method='laplace' expands log p(x) around the MAP code and needs map_steps > 0 "
                "(or map_steps=None for the default of 100)."
            )
        return self.map_steps

    def _check_fit_settings(self, X: np.ndarray, split: Split) -> None:
        self._check_score_settings()
        if self.score_method == "laplace" and self.is_categorical_.any():
            raise ValueError(
                "PAE: score_method='laplace' expands the Gaussian likelihood of continuous columns; with "
                "categorical columns use score_method='combined', 'latent' or 'reconstruction'."
            )
        weight = self._row_weights(split.fit_rows)
        n_codes = len(split.fit_rows) if weight is None else int(np.count_nonzero(weight))
        if n_codes <= self.n_components_:
            # The codes of n rows span at most n - 1 dimensions: a density over n_components
            # dimensions fitted to them is degenerate (scores near -1e40 off those rows).
            raise ValueError(
                f"PAE: the latent flow is fitted to the codes of the training rows and needs more of them than "
                f"n_components={self.n_components_}; got n_samples={len(X)} ({n_codes} training row(s) of positive "
                f"weight after validation_fraction={self.validation_fraction}). Fit on more rows or lower n_components."
            )

    def _cost_key(self) -> tuple:
        return (self.score_method, self._check_score_settings())

    def _make_flow(self) -> FlowAdapter:
        if isinstance(self.flow, str):
            hidden = self.flow_hidden_layer_sizes
            if isinstance(hidden, str):  # "auto"
                hidden = (128, 128) if self._images else (64, 64)
            flow = build_flow(self.flow, self.n_components_, self.flow_transforms, hidden)
        else:
            flow = copy.deepcopy(self.flow).float()
        return FlowAdapter(flow, self.n_components_)

    def _build_flow_prior(self) -> FlowPrior:
        """The latent flow of stage 2, untrained (its codes are standardized after training)."""
        return FlowPrior(self._make_flow(), noise=self.latent_noise)

    def _build_module(self, X: np.ndarray) -> Autoencoder:
        head = self._make_head(X.shape[1])
        encoder, decoder, inputs = self._table_networks(head)
        return Autoencoder(encoder, decoder, head, inputs)

    def _fit_rest(self, X: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        """Stage 2, in named steps: code standardization, feature ranges, noise scale, then the latent flow.

        A continued fit re-standardizes the codes of its rows (the
        autoencoder has moved them) and the flow continues on those;
        ``partial_fit`` accumulates the feature ranges over its chunks.
        """
        codes = self._run("transform", self._encode, X)
        self._fit_code_standardization(codes[split.fit_rows], self._row_weights(split.fit_rows))
        self._fit_feature_ranges(X, split.fit_rows, accumulate=self._partial and self._continuing)
        self._fit_noise_scale(X, split.held_out)
        self._fit_latent_flow((codes - self.latent_mean_) / self.latent_scale_, split, rng)

    def _fit_code_standardization(self, codes: np.ndarray, weight: np.ndarray | None = None) -> None:
        if weight is None:
            mean, std = codes.mean(axis=0), codes.std(axis=0)
        else:
            mean = np.average(codes, axis=0, weights=weight)
            std = np.sqrt(np.average((codes - mean) ** 2, axis=0, weights=weight))
        self.latent_mean_ = mean
        self.latent_scale_ = np.maximum(std, 1e-6 * max(std.max(), 1.0))

    def _fit_feature_ranges(self, X: np.ndarray, rows: np.ndarray, accumulate: bool = False) -> None:
        """``feature_mean_`` and ``feature_bounds_`` (range widened by 10%), block by block.

        With ``accumulate``, the rows extend those of the earlier calls
        (``n_samples_seen_`` counts them all).
        """
        total, low, high = np.zeros(X.shape[1]), np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)
        weight = self._row_weights(rows)
        n_rows = self._rows_total(len(X), rows)
        if accumulate:
            n_before = getattr(self, "_weight_seen", self.n_samples_seen_) - n_rows
            total = self.feature_mean_ * n_before
            bound_low, bound_high = self.feature_bounds_
            width = (bound_high - bound_low) / 1.2
            low, high = bound_low + 0.1 * width, bound_high - 0.1 * width
            n_rows += n_before
        count = np.zeros(X.shape[1])
        step = max(1, 2**22 // X.shape[1])
        for start, block in zip(range(0, len(rows), step), iter_blocks(X, step, rows), strict=True):
            w = None if weight is None else weight[start : start + len(block)]
            if w is not None:
                block = np.where(w[:, None] > 0, block, np.nan)  # rows of weight 0 are left out, of the range too
            block_total, block_count = observed_column_sums(block, w)
            total += block_total
            count += block_count
            low = np.fmin(low, np.nanmin(block, axis=0, initial=np.inf))
            high = np.fmax(high, np.nanmax(block, axis=0, initial=-np.inf))
        if not accumulate:
            n_rows = np.where(count > 0, count, 1.0)
        self.feature_mean_ = total / n_rows
        margin = 0.1 * (high - low)
        self.feature_bounds_ = np.stack([low - margin, high + margin]).astype(np.float64)

    def _fit_noise_scale(self, X: np.ndarray, rows: np.ndarray) -> None:
        """``sigma_``: the RMS reconstruction error per feature on ``rows``, floored at 1% of its overall RMS.

        The floor is taken in standardized units (``feature_scale_``), so that
        a column's floor does not depend on the scale of the others.

        Over each feature's observed entries; 1 for categorical columns (their
        likelihood is the decoder's categorical distribution).
        """
        module = self._module

        def squared_error(x: Tensor) -> Tensor:
            decoded = module.decode(module.encode(x))
            error = (x.to(decoded.dtype) - decoded).double() ** 2
            observed = ~torch.isnan(error)
            return torch.cat([torch.where(observed, error, 0.0), observed.double()], dim=-1)

        sums = self._sum_over_rows("squared_error", squared_error, X, rows)
        d = X.shape[1]
        rms = np.sqrt(sums[:d] / np.maximum(sums[d:], 1)) / self.feature_scale_  # in standardized units
        continuous = ~self.is_categorical_
        overall = float(np.sqrt(np.mean(rms[continuous] ** 2))) if continuous.any() else 1.0
        floored = np.maximum(rms, 0.01 * max(overall, 1e-12)) * self.feature_scale_
        self.sigma_ = np.where(continuous, floored, 1.0)

    def _fit_latent_flow(self, standardized: np.ndarray, split: Split, rng: np.random.RandomState) -> None:
        existing = self.flow_net_ if self._continuing else None
        if existing is not None:  # the flow trains on standardized codes: undo the raw-code view meanwhile
            existing.module_.standardize(np.zeros(self.n_components_), np.ones(self.n_components_))
        self.flow_net_ = self._train_stage(
            self._build_flow_prior,
            standardized.astype(np.float32),
            split,
            seed=draw_seed(rng),
            stage="latent flow",
            max_epochs=self._stage_epochs(self.flow_max_epochs),
            learning_rate=self.flow_learning_rate,
            batch_size=self.flow_batch_size,
            existing=existing,
        )
        self.flow_net_.module_.standardize(self.latent_mean_, self.latent_scale_)
        self.flow_history_ = self.flow_net_.history

    def _fit_offset(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        """``offsets_`` of every score method that one pass over (a subsample of) the training rows gives.

        Keys are ``(score_method, map_steps)``. The three cheap methods share
        the pass; ``"laplace"`` is added when it is the fitted method.
        """
        steps = self._check_score_settings()
        laplace = self.score_method == "laplace"

        def terms(x: Tensor, steps: int) -> tuple[Tensor, ...]:
            z = self._map_codes(x, steps)
            parts = (self._log_likelihood(x, z), self._prior.log_prob(z))
            missing = torch.isnan(x)
            return (*parts, self._laplace_term(z, ~missing if bool(missing.any()) else None)) if laplace else parts

        rows = self._offset_rows(X, rng)
        log_likelihood, log_prior, *laplace_term = self._run(
            f"offset_terms_{laplace}",
            partial(terms, steps=steps),
            X,
            rows=rows,
            steps=(lambda k: partial(terms, steps=k), steps),
        )
        scores = {"combined": log_likelihood + log_prior, "latent": log_prior, "reconstruction": log_likelihood}
        if laplace:
            scores["laplace"] = scores["combined"] + laplace_term[0]
        weight = self._row_weights(rows)
        self.offsets_ = {(method, steps): self._offset_from(values, weight) for method, values in scores.items()}

    @property
    def offset_(self) -> float:
        """The ``contamination`` quantile of the training scores under the current ``score_method``.

        Offsets of ``"combined"``, ``"latent"`` and ``"reconstruction"`` are
        computed at fit, so ``set_params(score_method=...)`` on a fitted model
        keeps ``predict`` consistent; ``"laplace"`` (or other ``map_steps``)
        needs a fit with those settings.
        """
        check_is_fitted(self, "offsets_")
        key = (self.score_method, self._check_score_settings())
        if key not in self.offsets_:
            fitted = ", ".join(f"{m!r} (map_steps={k})" for m, k in self.offsets_)
            raise ValueError(
                f"offset_ for score_method={key[0]!r} with map_steps={key[1]} was not computed at fit "
                f"(available: {fitted}); refit with these settings to use decision_function or predict."
            )
        return self.offsets_[key]

    # ------------------------------------------------------------------- hooks
    @property
    def _module(self) -> Autoencoder:
        return self.net_.module_

    def _fitted_nets(self) -> list:
        return [net for net in (getattr(self, "net_", None), getattr(self, "flow_net_", None)) if net is not None]

    @property
    def _prior(self) -> FlowPrior:
        return self.flow_net_.module_

    def _encode(self, x: Tensor) -> Tensor:
        return self._module.encode(x)

    def _decode(self, z: Tensor) -> Tensor:
        return self._module.decode(z)

    def _reconstruct(self, x: Tensor, return_std: bool):
        reconstruction = self._decode(self._encode(x))
        if not return_std:
            return reconstruction
        std = torch.where(self._tensor(self.is_categorical_) > 0, torch.nan, self._tensor(self.sigma_))
        return reconstruction, std.expand_as(reconstruction)

    def _log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log N(x; g(z), sigma_^2)`` per row over the observed continuous entries, float64.

        Plus, with categorical columns, the log-probability of each observed
        category under the decoder's categorical distribution.
        """
        head = self._module.head
        params = self._module.decoder_params(z)
        decoded = head.point_estimate(params)
        sigma = self._tensor(self.sigma_)
        residual = (x.to(decoded.dtype) - decoded) / sigma.to(decoded.dtype)
        if not self.is_categorical_.any() and not bool(torch.isnan(x).any()):
            return -0.5 * sum_features(residual * residual) - sigma.log().sum() - 0.5 * x.shape[-1] * LOG_2PI
        observed = ~torch.isnan(x) & (self._tensor(self.is_categorical_) == 0)
        # residuals of missing entries are zeroed before squaring: a NaN there would poison the MAP gradients
        residual = torch.where(observed, residual, 0.0)
        terms = -0.5 * residual * residual
        log_sigma = torch.where(observed, sigma.log(), 0.0).sum(-1)
        n_observed = observed.sum(-1, dtype=torch.float64)
        return sum_features(terms) - log_sigma - 0.5 * LOG_2PI * n_observed + head.categorical_log_prob(params, x)

    def _map_codes(self, x: Tensor, steps: int) -> Tensor:
        """Codes minimising ``-log p(x|z) - log p(z)`` (Eq. 9), from ``f(x)``, all rows at once (network dtype)."""
        z = self._encode(x)
        if steps == 0:
            return z
        prior = self._prior
        mean, scale = prior.loc.to(z.dtype), prior.scale.to(z.dtype)
        standardized = ((z - mean) / scale).detach().requires_grad_(True)
        optimizer = torch.optim.Adam([standardized], lr=self.map_learning_rate)
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad()
                codes = standardized * scale + mean
                loss = -(self._log_likelihood(x, codes) + prior.log_prob(codes)).sum()
                (grad,) = torch.autograd.grad(loss, standardized)
                standardized.grad = grad
                optimizer.step()
        return (standardized * scale + mean).detach()

    def _laplace_term(self, z: Tensor, observed: Tensor | None = None) -> Tensor:
        r"""``K/2 log 2 pi - 1/2 log det H``, ``H = J_b^T J_b + J_g^T J_g / sigma^2`` the Gauss-Newton Hessian (Eq. 10).

        The K forward-mode Jacobian columns of every row come from one
        batched pass (:func:`~skprobae.models._posterior.jacobian_columns`).
        ``log det H`` comes from the QR factor of the stacked whitened
        Jacobian ``J`` (``H = J^T J = R^T R``), never from ``H`` itself:
        forming ``H`` squares ``J``'s condition number, and where the decoder
        is nearly flat in some directions and steep in others (shuttle's flow
        tails) a Cholesky factor of ``H`` fails or loses every digit of the
        small eigenvalues. ``J_b`` (a bijection's Jacobian) keeps ``R``
        nonsingular. A row whose Jacobian is not finite gets a NaN score,
        with a warning. Missing entries (``observed`` False) drop out of
        ``J_g``.
        """
        prior, sigma = self._prior, self._tensor(self.sigma_)

        def whitened_decoder_and_base(codes: Tensor) -> Tensor:
            return torch.cat([self._decode(codes) / sigma, prior.to_base(codes)[0].double()], dim=-1)

        J = jacobian_columns(whitened_decoder_and_base, z).double()  # (n, d + K, K)
        if observed is not None:
            keep = torch.cat([observed, observed.new_ones(len(z), z.shape[-1])], dim=-1)
            J = torch.where(keep[:, :, None], J, 0.0)
        usable = torch.isfinite(J).all(-1).all(-1)
        if not usable.all():
            warnings.warn(
                f"PAE: the Laplace Hessian of {int((~usable).sum())} row(s) is not finite (the decoder or the flow "
                "overflows there); their 'laplace' scores are NaN.",
                RuntimeWarning,
                stacklevel=2,
            )
        R = torch.linalg.qr(torch.where(usable[:, None, None], J, 0.0), mode="r").R
        log_det = 2 * R.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
        return torch.where(usable, 0.5 * z.shape[-1] * LOG_2PI - 0.5 * log_det, torch.nan)

    def _scores(self, x: Tensor, steps: int | None = None) -> Tensor:
        z = self._map_codes(x, self._check_score_settings() if steps is None else steps)
        if self.score_method == "latent":
            return self._prior.log_prob(z)
        log_likelihood = self._log_likelihood(x, z)
        if self.score_method == "reconstruction":
            return log_likelihood
        joint = log_likelihood + self._prior.log_prob(z)
        if self.score_method == "combined":
            return joint
        missing = torch.isnan(x)
        return joint + self._laplace_term(z, ~missing if bool(missing.any()) else None)

    def _log_density(self, x: Tensor) -> Tensor:
        return self._scores(x)

    def _score_steps(self):
        return (lambda k: partial(self._scores, steps=k), self._check_score_settings())

    # ------------------------------------------------------ posterior inference
    def _corrupted_input(self, X, allow_missing: bool) -> np.ndarray:
        check_is_fitted(self)
        return self._check_rows(X, allow_empty_rows=True, float32_range=False)[0]

    def _noise_std(self, noise_std) -> np.ndarray:
        values = np.asarray(noise_std, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(self.n_features_in_, float(values))
        if values.shape != (self.n_features_in_,):
            raise ValueError(
                f"noise_std must be a scalar or an array of shape ({self.n_features_in_},), got shape {values.shape}."
            )
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("noise_std must be finite and >= 0 (the std of the Gaussian noise on each feature).")
        if (values[self.is_categorical_] > 0).any():
            columns = [int(j) for j in np.flatnonzero(self.is_categorical_ & (values > 0))]
            raise ValueError(
                f"noise_std must be 0 on the categorical columns {columns}: an observed category is taken as "
                "given (mark an unreliable one missing, NaN, to have it imputed)."
            )
        return values

    def _posterior(
        self, X: np.ndarray, noise_std: np.ndarray, n_restarts: int, n_samples: int, n_steps: int, random_state
    ) -> tuple[np.ndarray, ...]:
        """Posterior mean, std and ``n_samples`` draws of the clean rows of ``X``.

        With categorical columns, also each column's posterior category probabilities (one array per
        column, ``(n, n_categories)``, after the three others); a missing category's mean is its most
        probable category, its std NaN, its draws drawn from each posterior draw's probabilities.
        """
        for name, value in (("n_restarts", n_restarts), ("n_samples", n_samples)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}.")
        self._sync_modules()
        K, d = self.n_components_, self.n_features_in_
        generator = torch_generator(random_state)
        restart_noise, draw_uniform, draw_noise, clean_noise = (
            draw.to(self._device)
            for draw in (
                torch.randn(n_restarts - 1, K, generator=generator, dtype=torch.float64),
                torch.rand(n_samples, generator=generator, dtype=torch.float64),
                torch.randn(n_samples, K, generator=generator, dtype=torch.float64),
                torch.randn(n_samples, d, generator=generator, dtype=torch.float64),
            )
        )
        sigma, noise, fill = self._tensor(self.sigma_), self._tensor(noise_std), self._tensor(self.feature_mean_)
        bounds = (self._tensor(self.feature_bounds_[0]), self._tensor(self.feature_bounds_[1]))
        prior, module = self._prior, self._module
        categorical_columns = np.flatnonzero(self.is_categorical_)
        is_categorical = self._tensor(self.is_categorical_) > 0
        head = module.head
        if len(categorical_columns):  # drawn after the others: models without categories keep their draws
            category_uniform = torch.rand(n_samples, len(categorical_columns), generator=generator, dtype=torch.float64)
            category_uniform = category_uniform.to(self._device)

        def decode(u: Tensor) -> Tensor:  # the posterior search is float64; the networks compute in their dtype
            if not len(categorical_columns):
                return module.decode(prior.from_base(u)).double()
            params = module.decoder_params(prior.from_base(u))
            return torch.cat([head.point_estimate(params), head.category_logits(params)], dim=-1).double()

        def posterior(x: Tensor, steps: int) -> tuple[Tensor, ...]:
            x = x.double()
            observed = ~torch.isnan(x)
            settings = PosteriorSettings(n_restarts, steps, self.map_learning_rate, n_samples)
            # An encoder trained on rows with missing entries (missingness indicators) sees them as missing, as in
            # training; one trained on complete rows sees a missing number at its training mean. A missing
            # category is missing either way (no one-hot).
            shown = x if self.missing_indicators_ else torch.where(observed | is_categorical, x, fill)
            start = prior.to_base(module.encode(shown))[0].double()
            categorical = CategoricalColumns(head, x) if len(categorical_columns) else None
            result = posterior_draws(
                decode, start, x, observed & ~is_categorical, sigma, noise, restart_noise, draw_uniform, draw_noise,
                settings, bounds, categorical,
            )  # fmt: skip
            post_mean, post_std = result.moments()
            draws = result.draws(clean_noise)
            probabilities = []
            per_column = result.category_probabilities or []
            for i, (j, per_draw) in enumerate(zip(categorical_columns, per_column, strict=True)):
                known = observed[:, j]
                code = x[:, j].nan_to_num(0.0).long()
                given = nn.functional.one_hot(code, per_draw.shape[-1]).double()
                averaged = torch.where(known[:, None], given, per_draw.double().mean(1))
                probabilities.append(averaged)
                post_mean[:, j] = torch.where(known, x[:, j], averaged.argmax(-1).double())
                post_std[:, j] = torch.where(known, 0.0, torch.nan)
                drawn = (per_draw.double().cumsum(-1) < category_uniform[:, i, None]).sum(-1)  # inverse CDF
                drawn = drawn.clamp_max(per_draw.shape[-1] - 1).double()
                draws[:, :, j] = torch.where(known[:, None], x[:, j, None], drawn)
            return post_mean, post_std, draws, result.failed, *probabilities

        kind = f"posterior_{n_restarts}_{n_samples}_{n_steps}"
        steps = (lambda k: partial(posterior, steps=k), n_steps)
        mean, std, draws, failed, *probabilities = self._run(kind, partial(posterior, steps=n_steps), X, steps=steps)
        n_failed = int(failed.sum())
        if n_failed:
            warnings.warn(
                f"PAE: no posterior mode could be found for {n_failed} row(s) (every MAP start diverged or gave a "
                "non-finite Laplace factor); they get the draws of the best start with the prior's spread.",
                RuntimeWarning,
                stacklevel=3,
            )
        return mean, std, draws, *probabilities

    def impute(self, X, return_std: bool = False, *, n_restarts=4, n_samples=100, n_steps=200, random_state=0):
        """Fill missing entries (NaN) with their posterior mean given the observed ones.

        The posterior is computed in the flow's base space (Eq. 13 with the
        missing entries left out of the likelihood): MAP from ``n_restarts``
        starts, a Laplace Gaussian at each distinct mode weighted by its
        evidence, ``n_samples`` draws decoded; a missing entry's std adds the
        model noise ``sigma_`` to the spread of the decoded draws. Rows with
        nothing missing are returned unchanged (std 0); rows with everything
        missing get the prior's mean and spread. Decoded draws are clipped to
        each feature's training range widened by 10% on both sides
        (``feature_bounds_``): broad posteriors reach the flow's tails, where
        nothing in the training data supports the decoder's extrapolation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing entry.
        return_std : bool, default=False
            Also return the posterior std of every entry.
        n_restarts : int, default=4
            MAP starts: the encoding of the row with missing entries set to the
            training means, plus seeded draws from the prior.
        n_samples : int, default=100
            Posterior draws behind the mean and std.
        n_steps : int, default=200
            Adam steps of the MAP search (learning rate ``map_learning_rate``).
        random_state : int, RandomState or None, default=0
            Fixed by default so repeated calls agree; the random numbers are
            shared by the rows, so a row's result does not depend on the others.

        Returns
        -------
        X_filled : ndarray or DataFrame of shape (n_samples, n_features)
            With categorical columns, a missing category is filled with its
            most probable one (:meth:`impute_category_proba` gives the
            probabilities) and the result has the fitted column types, as
            :meth:`reconstruct`'s.
        X_std : ndarray of shape (n_samples, n_features), only if ``return_std``
            Posterior std of the filled entries, 0 for observed ones, NaN for
            a filled category (a label has no std).
        """
        filled, std, _ = self._impute(X, n_restarts, n_samples, n_steps, random_state)
        filled = table_output(self, filled)
        return (filled, std) if return_std else filled

    def impute_category_proba(self, X, *, n_restarts=4, n_samples=100, n_steps=200, random_state=0) -> list:
        """Posterior probabilities of the categories of each categorical column, given the observed entries.

        :meth:`impute` fills a missing category with the most probable one;
        this gives the whole distribution: the average over the posterior
        draws of the decoder's category probabilities. An observed entry gets
        probability 1 on its category.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            NaN (or None / pd.NA in a DataFrame) marks a missing entry.
        n_restarts, n_samples, n_steps, random_state
            As for :meth:`impute`; the same values give the probabilities
            behind the categories :meth:`impute` returns.

        Returns
        -------
        probabilities : list of ndarray of shape (n_samples, n_categories)
            One array per categorical column in the order of ``categories_``
            (column ``j`` of array ``i`` is the probability of
            ``categories_[i][j]``); empty when the model has no categorical column.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from skprobae import PAE
        >>> rng = np.random.default_rng(0)
        >>> size = rng.normal(size=300)
        >>> table = pd.DataFrame({"size": size, "kind": pd.Categorical(np.where(size > 0, "big", "small"))})
        >>> pae = PAE(max_epochs=20, flow_max_epochs=5, random_state=0).fit(table)
        >>> holes = table.iloc[:4].copy()
        >>> holes.loc[:, "kind"] = np.nan  # the size is known, the kind is not
        >>> proba = pae.impute_category_proba(holes, n_samples=20, n_steps=20)[0]
        >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
        ((4, 2), True)
        >>> filled = pae.impute(holes, n_samples=20, n_steps=20)  # the most probable kind, as a DataFrame
        >>> bool((filled["kind"].cat.codes.to_numpy() == proba.argmax(axis=1)).all())
        True
        """
        return self._impute(X, n_restarts, n_samples, n_steps, random_state)[2]

    def _impute(self, X, n_restarts, n_samples, n_steps, random_state) -> tuple[np.ndarray, np.ndarray, list]:
        """Filled rows (category codes), their posterior std and the category probabilities of :meth:`impute`."""
        X = self._corrupted_input(X, allow_missing=True)
        missing = np.isnan(X)
        rows = missing.any(axis=1)
        filled, std = X.astype(np.float64), np.zeros(X.shape)
        probabilities = []
        for j, levels in zip(np.flatnonzero(self.is_categorical_), self.categories_, strict=True):
            given = np.zeros((len(X), len(levels)))
            known = ~missing[:, j]
            given[np.flatnonzero(known), X[known, j].astype(int)] = 1.0
            probabilities.append(given)
        if rows.any():
            mean, post_std, _, *posterior = self._posterior(
                X[rows], np.zeros(X.shape[1]), n_restarts, n_samples, n_steps, random_state
            )
            filled[rows] = np.where(missing[rows], mean, X[rows])
            std[rows] = np.where(missing[rows], post_std, 0.0)
            for given, column in zip(probabilities, posterior, strict=True):
                given[rows] = column
        return filled, std, probabilities

    def denoise(
        self, X, noise_std, return_std: bool = False, *, n_restarts=4, n_samples=100, n_steps=200, random_state=0
    ):
        """Posterior mean of the clean rows given rows corrupted by Gaussian noise of std ``noise_std`` (Eq. 14).

        The likelihood variance is ``sigma_**2 + noise_std**2``. Given a
        posterior draw of the code, each clean entry is Gaussian between the
        decoded value and the noisy one, weighted by the two variances.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Noisy rows, no NaN (use :meth:`impute` or :meth:`sample_posterior`
            for missing entries).
        noise_std : float or array-like of shape (n_features,)
            Std of the corruption, >= 0.
        return_std : bool, default=False
            Also return the posterior std of every clean entry.
        n_restarts, n_samples, n_steps, random_state
            As for :meth:`impute`.

        Returns
        -------
        X_clean : ndarray of shape (n_samples, n_features)
        X_std : ndarray of shape (n_samples, n_features), only if ``return_std``
        """
        check_is_fitted(self)
        noise_std = self._noise_std(noise_std)
        X_checked = self._corrupted_input(X, allow_missing=True)
        if np.isnan(X_checked).any():
            raise ValueError(
                f"denoise needs complete rows, but X has NaN in {int(np.isnan(X_checked).any(axis=1).sum())} row(s); "
                "use impute (missing entries) or sample_posterior (missing and noisy entries)."
            )
        mean, std = self._posterior(X_checked, noise_std, n_restarts, n_samples, n_steps, random_state)[:2]
        mean = table_output(self, mean)
        return (mean, std) if return_std else mean

    def sample_posterior(
        self, X, n_samples: int = 100, noise_std=0.0, random_state=None, *, n_restarts=4, n_steps=200
    ) -> np.ndarray:
        """Draws of the clean rows given rows with missing (NaN) and/or noisy entries.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            NaN marks a missing entry; the observed entries may be noisy.
        n_samples : int, default=100
            Posterior draws per row.
        noise_std : float or array-like of shape (n_features,), default=0.0
            Std of the noise on the observed entries; 0 keeps them as given.
        random_state : int, RandomState or None, default=None
            Seeds the draws (shared by the rows); with an int two calls are identical.
        n_restarts, n_steps
            As for :meth:`impute`.

        Returns
        -------
        draws : ndarray of shape (n_rows, n_samples, n_features)
            Float64; a categorical column holds category codes (indices into
            ``categories_``), a missing one drawn from each posterior draw's
            category probabilities.
        """
        check_is_fitted(self)
        noise_std = self._noise_std(noise_std)
        X = self._corrupted_input(X, allow_missing=True)
        return self._posterior(X, noise_std, n_restarts, n_samples, n_steps, random_state)[2]
