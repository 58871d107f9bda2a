r"""Matrix-variate normal and Student-t distributions and their output families.

An ``H x W`` image gets a row scale ``U = A A^T`` (``H x H``) and a column
scale ``V = B B^T`` (``W x W``) instead of one ``HW x HW`` covariance, so a
log-density costs :math:`O(H^3 + W^3 + HW(H + W))` and no dense covariance is
ever formed. Rows of data stay flat in raster order (``x.reshape(H, W)``): the
distributions' event shape is ``(H * W,)``, so they mix with the vector
families and with :class:`~skprobae.distributions.Mixture`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Chi2, Distribution, constraints

from .._shapes import parse_image_shape
from ._base import LOG_2PI, OutputDistribution, lower_cholesky, n_tril, positive

_NO_SHAPE = torch.Size()


class _MatrixVariate(Distribution):
    """A mean matrix with row and column scale factors ``A`` and ``B``.

    A factor is ``None`` (identity), a diagonal of shape ``batch + (n,)``
    (``triangular=False``) or a lower triangle of shape ``batch + (n, n)``
    (``triangular=True``).
    """

    support = constraints.real_vector
    has_rsample = True
    arg_constraints: dict = {}

    def __init__(
        self,
        loc: Tensor,
        matrix_shape: Sequence[int],
        row_factor: Tensor | None = None,
        col_factor: Tensor | None = None,
        triangular: bool = False,
        batch_shape: torch.Size = _NO_SHAPE,
        validate_args: bool | None = None,
    ):
        H, W = self.matrix_shape = (int(matrix_shape[0]), int(matrix_shape[1]))
        if loc.shape[-1] != H * W:
            raise ValueError(f"loc has {loc.shape[-1]} values per row; a {H}x{W} matrix needs {H * W}.")
        self.triangular = triangular
        factor_dims = 2 if triangular else 1
        shapes = [loc.shape[:-1], batch_shape]
        shapes += [f.shape[:-factor_dims] for f in (row_factor, col_factor) if f is not None]
        batch = torch.broadcast_shapes(*shapes)
        self.loc = loc.expand((*batch, H * W))
        self.row_factor = None if row_factor is None else row_factor.expand((*batch, *row_factor.shape[-factor_dims:]))
        self.col_factor = None if col_factor is None else col_factor.expand((*batch, *col_factor.shape[-factor_dims:]))
        super().__init__(batch, torch.Size([H * W]), validate_args=validate_args)

    def _as_matrix(self, value: Tensor) -> Tensor:
        return value.unflatten(-1, self.matrix_shape)

    def _whiten(self, diff: Tensor) -> Tensor:
        """``A^{-1} D B^{-T}`` for a flat difference ``D``, as ``(..., H, W)``, in ``diff``'s dtype."""
        D = self._as_matrix(diff)
        A, B = (None if f is None else f.to(diff.dtype) for f in (self.row_factor, self.col_factor))
        if not self.triangular:
            if A is not None:
                D = D / A.unsqueeze(-1)
            return D if B is None else D / B.unsqueeze(-2)
        if A is not None:
            D = torch.linalg.solve_triangular(A, D, upper=False)
        if B is not None:
            D = torch.linalg.solve_triangular(B, D.mT, upper=False).mT
        return D

    def _color(self, Z: Tensor) -> Tensor:
        """``A Z B^T`` for white ``Z`` of shape ``(..., H, W)``."""
        A, B = self.row_factor, self.col_factor
        if not self.triangular:
            if A is not None:
                Z = Z * A.unsqueeze(-1)
            return Z if B is None else Z * B.unsqueeze(-2)
        if A is not None:
            Z = A @ Z
        return Z if B is None else Z @ B.mT

    def _log_det_factors(self, dtype: torch.dtype | None = None) -> Tensor:
        """``log |V ⊗ U|^{1/2} = W log|A| + H log|B|``."""
        H, W = self.matrix_shape
        total = self.loc.new_zeros(self.batch_shape, dtype=dtype)
        for factor, repeat in ((self.row_factor, W), (self.col_factor, H)):
            if factor is not None:
                diag = factor.diagonal(dim1=-2, dim2=-1) if self.triangular else factor
                total = total + repeat * diag.to(total.dtype).log().sum(-1)
        return total

    @staticmethod
    def _working_dtype(value: Tensor) -> torch.dtype:
        # Whitening by a triangular factor with tiny diagonal entries (the softplus floor is
        # 1e-6) overflows float32 during training; float64 keeps the loss finite.
        return torch.float64 if value.dtype in (torch.float32, torch.float16, torch.bfloat16) else value.dtype

    def _factor_variance(self, factor: Tensor | None, n: int) -> Tensor:
        """Diagonal of ``A A^T`` (the row or column variances)."""
        if factor is None:
            return self.loc.new_ones((*self.batch_shape, n))
        return (factor**2).sum(-1) if self.triangular else factor**2

    def _kron_variance(self) -> Tensor:
        """``U_ii V_jj`` for every pixel, flat."""
        H, W = self.matrix_shape
        rows, cols = self._factor_variance(self.row_factor, H), self._factor_variance(self.col_factor, W)
        return (rows.unsqueeze(-1) * cols.unsqueeze(-2)).flatten(-2)

    def _white_noise(self, sample_shape: torch.Size) -> Tensor:
        shape = (*sample_shape, *self.batch_shape, *self.matrix_shape)
        return torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    @property
    def mean(self) -> Tensor:
        """The mean matrix ``M``, flat in raster order: ``loc``, shape ``batch_shape + (H * W,)``."""
        return self.loc

    @property
    def mode(self) -> Tensor:
        """The mode, the mean matrix ``M``, flat in raster order: ``loc``, shape ``batch_shape + (H * W,)``."""
        return self.loc

    def _expanded_args(self, batch_shape: torch.Size) -> dict:
        dims = 2 if self.triangular else 1

        def grow(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.expand((*batch_shape, *t.shape[len(t.shape) - dims :]))

        return {
            "loc": self.loc.expand((*batch_shape, self.loc.shape[-1])),
            "matrix_shape": self.matrix_shape,
            "row_factor": grow(self.row_factor),
            "col_factor": grow(self.col_factor),
            "triangular": self.triangular,
            "validate_args": False,
        }


class MatrixNormal(_MatrixVariate):
    r"""Matrix normal :math:`\mathcal{MN}(M, U, V)` over flat ``H x W`` matrices.

    Equivalent to :math:`\mathrm{vec}(X) \sim \mathcal{N}(\mathrm{vec}(M),
    V \otimes U)` (``Cov(X_ij, X_kl) = U_ik V_jl``), evaluated as

    .. math::

        \log p(X) = -\tfrac{HW}{2}\log 2\pi - W \log|A| - H \log|B|
        - \tfrac12 \lVert A^{-1}(X - M)B^{-\top} \rVert_F^2

    with ``U = A A^T`` and ``V = B B^T``. The per-pixel variance
    ``U_ii V_jj`` is exact.

    Parameters
    ----------
    loc : Tensor of shape batch + (H * W,)
        The mean, flat in raster order.
    matrix_shape : (H, W)
        Rows ``H`` and columns ``W`` of the matrix; ``H * W`` must equal
        ``loc.shape[-1]``.
    row_factor, col_factor : Tensor or None
        Scale factors of ``U`` and ``V``: None for the identity, a positive
        diagonal ``batch + (n,)``, or a lower triangle ``batch + (n, n)``
        with ``triangular=True``.
    triangular : bool, default=False
        Whether the factors are lower triangles ``(n, n)`` (full row and
        column covariances) rather than diagonals ``(n,)``.
    batch_shape : torch.Size, default=torch.Size()
        Extra batch shape; the distribution's batch shape is the broadcast of
        this with the batch shapes of ``loc`` and the factors.
    validate_args : bool or None, default=None
        Passed to :class:`torch.distributions.Distribution`: whether to check
        that values are real vectors (None: torch's global default).

    Raises
    ------
    ValueError
        If ``loc.shape[-1]`` is not ``H * W``.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import MatrixNormal
    >>> dist = MatrixNormal(torch.zeros(6), (2, 3), row_factor=torch.ones(2), col_factor=torch.full((3,), 2.0))
    >>> dist.event_shape
    torch.Size([6])
    >>> dist.variance  # U_ii V_jj = 1 * 2 ** 2
    tensor([4., 4., 4., 4., 4., 4.])
    >>> dist.log_prob(dist.rsample((5,))).shape
    torch.Size([5])
    """

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of flat ``H x W`` matrices.

        Parameters
        ----------
        value : Tensor of shape (..., H * W)
            Flat matrices in raster order, broadcastable against
            ``batch_shape + (H * W,)``.

        Returns
        -------
        Tensor of shape broadcast(value.shape[:-1], batch_shape)
            The log-density, in float64 for float32, float16 or bfloat16
            values (the whitening is computed in float64 to stay finite),
            otherwise in the dtype of ``value``.
        """
        H, W = self.matrix_shape
        work = self._working_dtype(value)
        E = self._whiten((value - self.loc).to(work))
        log_prob = -0.5 * E.pow(2).sum((-2, -1)) - self._log_det_factors(work) - 0.5 * H * W * LOG_2PI
        return log_prob  # float64 (the working dtype of float32 values), as every family's density

    def rsample(self, sample_shape: torch.Size = _NO_SHAPE) -> Tensor:
        """Reparameterised draws ``M + A Z B^T`` with ``Z`` standard normal.

        Parameters
        ----------
        sample_shape : torch.Size, default=torch.Size()
            Shape of the draws to take for every batch element.

        Returns
        -------
        Tensor of shape sample_shape + batch_shape + (H * W,)
            Flat matrices in raster order, in the dtype of ``loc``.
        """
        return self.loc + self._color(self._white_noise(torch.Size(sample_shape))).flatten(-2)

    @property
    def variance(self) -> Tensor:
        """Per-pixel variance ``U_ii V_jj`` (exact), flat, shape ``batch_shape + (H * W,)``."""
        return self._kron_variance()

    def expand(self, batch_shape, _instance=None):
        """The same distribution with its parameters broadcast to ``batch_shape``.

        Parameters
        ----------
        batch_shape : torch.Size or sequence of int
            The new batch shape; the current one must broadcast to it.
        _instance : None
            Unused; part of torch's ``Distribution.expand`` signature.

        Returns
        -------
        MatrixNormal
            A new distribution (the parameters are expanded views, not copies)
            with argument validation off.
        """
        return MatrixNormal(**self._expanded_args(torch.Size(batch_shape)))


class MatrixStudentT(_MatrixVariate):
    r"""Matrix Student-t :math:`T_{H,W}(\nu, M, U, V)` over flat ``H x W`` matrices.

    Gupta and Nagar's parametrisation (*Matrix Variate Distributions*, 2000,
    Ch. 4): ``X | S ~ MN(M, S, V)`` with ``S ~ InverseWishart(nu + H - 1, U)``,

    .. math::

        \log p(X) = \log\Gamma_H\!\left(\tfrac{\nu + H + W - 1}{2}\right)
        - \log\Gamma_H\!\left(\tfrac{\nu + H - 1}{2}\right)
        - \tfrac{HW}{2}\log\pi - W\log|A| - H\log|B|
        - \tfrac{\nu + H + W - 1}{2}\log\left|I_H + E E^\top\right|,
        \quad E = A^{-1}(X - M)B^{-\top},

    where :math:`\Gamma_H` is the multivariate gamma function; the
    determinant is taken on the smaller of ``H`` and ``W`` (Sylvester), from
    the eigenvalues of :math:`E E^\top`. One
    row (``H = 1``) is a multivariate t with ``nu`` degrees of freedom and
    scale ``U V / nu``.

    The mean is ``M`` for ``nu > 1``; the mode is always ``M``.
    ``Cov(vec X) = (V ⊗ U) / (nu - 2)`` for ``nu > 2``, so the per-pixel
    variance is the row variance times the column variance, ``U_ii V_jj``,
    divided by ``nu - 2`` (the vanilla probabilistic autoencoder paper calls
    the product of row and column variances an approximation for the matrix
    t; in this parametrisation, with that factor, it is exact). It is NaN for
    ``nu <= 2``.

    Parameters
    ----------
    df : Tensor of shape batch
        Degrees of freedom ``nu > 0``; it broadcasts with the batch shapes of
        ``loc`` and the factors.
    loc, matrix_shape, row_factor, col_factor, triangular
        As for :class:`MatrixNormal`.
    validate_args : bool or None, default=None
        Passed to :class:`torch.distributions.Distribution`: whether to check
        that values are real vectors (None: torch's global default).

    Raises
    ------
    ValueError
        If ``loc.shape[-1]`` is not ``H * W``.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import MatrixStudentT
    >>> dist = MatrixStudentT(torch.tensor([1.5, 4.0]), torch.zeros(6), (2, 3))
    >>> dist.batch_shape, dist.event_shape
    (torch.Size([2]), torch.Size([6]))
    >>> dist.variance[:, 0]  # U_ii V_jj / (nu - 2): NaN for nu <= 2
    tensor([   nan, 0.5000])
    >>> dist.log_prob(dist.rsample((5,))).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        df: Tensor,
        loc: Tensor,
        matrix_shape: Sequence[int],
        row_factor: Tensor | None = None,
        col_factor: Tensor | None = None,
        triangular: bool = False,
        validate_args: bool | None = None,
    ):
        super().__init__(loc, matrix_shape, row_factor, col_factor, triangular, df.shape, validate_args)
        self.df = df.expand(self.batch_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of flat ``H x W`` matrices.

        Parameters
        ----------
        value : Tensor of shape (..., H * W)
            Flat matrices in raster order, broadcastable against
            ``batch_shape + (H * W,)``.

        Returns
        -------
        Tensor of shape broadcast(value.shape[:-1], batch_shape)
            The log-density, in float64 for float32, float16 or bfloat16
            values (the whitening is computed in float64 to stay finite),
            otherwise in the dtype of ``value``.
        """
        H, W = self.matrix_shape
        work = self._working_dtype(value)
        E = self._whiten((value - self.loc).to(work))
        gram = E @ E.mT if H <= W else E.mT @ E
        # log|I + E E^T| from the eigenvalues of the Gram matrix: unlike a Cholesky factor of
        # I + E E^T, this stays finite when float32 rounding makes a huge Gram matrix indefinite.
        log_det = torch.log1p(torch.linalg.eigvalsh(gram).clamp_min(0)).sum(-1)
        df = self.df.to(work)
        log_prob = (
            torch.mvlgamma((df + H + W - 1) / 2, H)
            - torch.mvlgamma((df + H - 1) / 2, H)
            - 0.5 * H * W * math.log(math.pi)
            - self._log_det_factors(work)
            - 0.5 * (df + H + W - 1) * log_det
        )
        return log_prob  # float64 (the working dtype of float32 values), as every family's density

    def rsample(self, sample_shape: torch.Size = _NO_SHAPE) -> Tensor:
        """Reparameterised draws: a matrix normal draw given an inverse-Wishart row scale (Bartlett).

        Parameters
        ----------
        sample_shape : torch.Size, default=torch.Size()
            Shape of the draws to take for every batch element.

        Returns
        -------
        Tensor of shape sample_shape + batch_shape + (H * W,)
            Flat matrices in raster order, in the dtype of ``loc``.
        """
        # S = A (L L^T)^{-1} A^T with L L^T ~ Wishart(nu + H - 1, I) (Bartlett), so
        # X = M + A L^{-T} Z B^T has X | S ~ MN(M, S, V).
        H, _ = self.matrix_shape
        sample_shape = torch.Size(sample_shape)
        df = self.df.expand((*sample_shape, *self.batch_shape))
        offsets = torch.arange(H, dtype=df.dtype, device=df.device)
        diagonal = Chi2(df.unsqueeze(-1) + H - 1 - offsets).rsample().sqrt()
        below = torch.randn((*df.shape, H, H), dtype=df.dtype, device=df.device).tril(-1)
        bartlett = below + torch.diag_embed(diagonal)
        Z = torch.linalg.solve_triangular(bartlett.mT, self._white_noise(sample_shape), upper=True)
        return self.loc + self._color(Z).flatten(-2)

    @property
    def variance(self) -> Tensor:
        """Per-pixel variance ``U_ii V_jj / (nu - 2)`` (exact), NaN for ``nu <= 2``.

        Shape ``batch_shape + (H * W,)``.
        """
        df = self.df.unsqueeze(-1)
        factor = torch.where(df > 2, 1 / (df - 2), torch.full_like(df, math.nan))
        return self._kron_variance() * factor

    @property
    def mean(self) -> Tensor:
        """The mean matrix ``M`` (``loc``) for ``nu > 1``, NaN otherwise; shape ``batch_shape + (H * W,)``."""
        return torch.where((self.df > 1).unsqueeze(-1), self.loc, torch.full_like(self.loc, math.nan))

    def expand(self, batch_shape, _instance=None):
        """The same distribution with its parameters broadcast to ``batch_shape``.

        Parameters
        ----------
        batch_shape : torch.Size or sequence of int
            The new batch shape; the current one must broadcast to it.
        _instance : None
            Unused; part of torch's ``Distribution.expand`` signature.

        Returns
        -------
        MatrixStudentT
            A new distribution (the parameters are expanded views, not copies)
            with argument validation off.
        """
        batch_shape = torch.Size(batch_shape)
        return MatrixStudentT(self.df.expand(batch_shape), **self._expanded_args(batch_shape))


def matrix_shape(image_shape: Sequence[int] | None, n_features: int, name: str) -> tuple[int, int]:
    """``(H, W)`` of a one-channel ``image_shape`` that matches ``n_features``.

    Raises
    ------
    ValueError
        If ``image_shape`` is missing, has more than one channel, or does not
        multiply to ``n_features``.
    """
    if image_shape is None:
        raise ValueError(f"distribution={name!r} needs image_shape=(H, W) or (1, H, W); got image_shape=None.")
    channels, H, W = parse_image_shape(image_shape, n_features)
    if channels != 1:
        raise ValueError(
            f"distribution={name!r} models one-channel images: image_shape must be (H, W) or (1, H, W), "
            f"got {tuple(image_shape)}."
        )
    return H, W


SCALES = ("identity", "diag", "full")


class MatrixNormalFamily(OutputDistribution):
    r"""``matrix_normal``, ``matrix_normal_diag``, ``matrix_normal_full``: :math:`\mathcal{MN}(M, U, V)`.

    The decoder outputs the mean image, then the row and column scales:
    nothing (``scale="identity"``, ``U = V = I``, the same density as
    ``normal``), ``H + W`` softplus scales (``"diag"``) or two Cholesky
    factors, ``H (H + 1) / 2 + W (W + 1) / 2`` values (``"full"``).

    Parameters
    ----------
    n_features : int
        Number of pixels ``H * W`` of each flattened one-channel image.
    image_shape : (H, W) or (1, H, W)
        Shape of one image; it must multiply to ``n_features``. None raises.
    scale : {"identity", "diag", "full"}, default="diag"
        Row and column scales: identities, positive diagonals or Cholesky
        factors.
    name : str, default=""
        The registered name (e.g. ``"matrix_normal_diag"``), used in error
        messages; empty for the class name.

    Raises
    ------
    ValueError
        If ``scale`` is not one of the three, or ``image_shape`` is None, has
        more than one channel or does not multiply to ``n_features``.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("matrix_normal_diag", 6, image_shape=(2, 3))
    >>> family
    MatrixNormalFamily(image_shape=(2, 3), scale='diag')
    >>> family.n_params  # 6 means, then 2 row and 3 column scales
    11
    >>> family.log_prob(torch.zeros(4, family.n_params), torch.zeros(4, 6)).shape
    torch.Size([4])
    """

    feature_channels = 1

    def __init__(self, n_features: int, image_shape: Sequence[int] | None, scale: str = "diag", name: str = ""):
        super().__init__(n_features)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}.")
        self.matrix_shape = matrix_shape(image_shape, n_features, name or type(self).__name__)
        self.scale = scale

    @property
    def _factor_sizes(self) -> tuple[int, int]:
        H, W = self.matrix_shape
        return {"identity": (0, 0), "diag": (H, W), "full": (n_tril(H), n_tril(W))}[self.scale]

    @property
    def n_params(self) -> int:
        return self.n_features + sum(self._factor_sizes)

    def _factors(self, params: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
        """Mean, row factor, column factor and the values that follow them."""
        n_row, n_col = self._factor_sizes
        d = self.n_features
        loc, raw_row, raw_col = params[..., :d], params[..., d : d + n_row], params[..., d + n_row : d + n_row + n_col]
        rest = params[..., d + n_row + n_col :]
        if self.scale == "identity":
            return loc, None, None, rest
        if self.scale == "diag":
            return loc, positive(raw_row), positive(raw_col), rest
        H, W = self.matrix_shape
        return loc, lower_cholesky(raw_row, H), lower_cholesky(raw_col, W), rest

    def distribution(self, params: Tensor) -> MatrixNormal:
        loc, row, col, _ = self._factors(params)
        return MatrixNormal(loc, self.matrix_shape, row, col, self.scale == "full", validate_args=False)

    def extra_repr(self) -> str:
        """The matrix shape and scale, shown in the module's ``repr``.

        Returns
        -------
        str
            ``"image_shape=(H, W), scale='...'"``.
        """
        return f"image_shape={self.matrix_shape}, scale={self.scale!r}"


class MatrixStudentTFamily(MatrixNormalFamily):
    r"""``matrix_t``, ``matrix_t_diag``, ``matrix_t_full``: :math:`T(\nu, M, U, V)`.

    Raw layout: the mean image, the row and column scales as for
    :class:`MatrixNormalFamily`, then the degrees of freedom (softplus).
    The point estimate is the mode ``M``; the variance follows
    :class:`MatrixStudentT` (NaN for ``nu <= 2``).

    Parameters
    ----------
    n_features : int
        Number of pixels ``H * W`` of each flattened one-channel image.
    image_shape : (H, W) or (1, H, W)
        Shape of one image; it must multiply to ``n_features``. None raises.
    scale : {"identity", "diag", "full"}, default="diag"
        Row and column scales: identities, positive diagonals or Cholesky
        factors.
    name : str, default=""
        The registered name (e.g. ``"matrix_t_full"``), used in error
        messages; empty for the class name.

    Raises
    ------
    ValueError
        If ``scale`` is not one of the three, or ``image_shape`` is None, has
        more than one channel or does not multiply to ``n_features``.

    Examples
    --------
    >>> import torch
    >>> from skprobae.distributions import make_distribution
    >>> family = make_distribution("matrix_t_full", 6, image_shape=(2, 3))
    >>> family.n_params  # 6 means, 3 + 6 Cholesky entries, then the degrees of freedom
    16
    >>> params = torch.zeros(4, family.n_params)
    >>> family.log_prob(params, torch.zeros(4, 6)).shape, family.point_estimate(params).shape
    (torch.Size([4]), torch.Size([4, 6]))
    """

    point_estimate_kind = "mode"

    @property
    def n_params(self) -> int:
        return super().n_params + 1

    def distribution(self, params: Tensor) -> MatrixStudentT:
        loc, row, col, rest = self._factors(params)
        df = positive(rest[..., 0])
        return MatrixStudentT(df, loc, self.matrix_shape, row, col, self.scale == "full", validate_args=False)
