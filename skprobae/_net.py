"""The skorch pieces every estimator trains with.

``LikelihoodNet`` is a :class:`skorch.NeuralNet` whose loss is computed from
``X`` by the module itself (``module.loss(output, X)``), never from skorch's
placeholder ``y``. Two things make it fast and safe:

* :class:`TensorBatches` serves mini-batches by indexing one tensor that
  already lives on the training device (no per-row ``Dataset.__getitem__``
  and ``collate``, which is what makes a default skorch net slow);
* :meth:`LikelihoodNet.run_single_epoch` sums the loss on the device, syncs
  once per epoch (a module may also expose a ``loss_terms`` dict of scalar
  tensors, set by its ``loss``; their epoch means are recorded as
  ``train_<name>`` / ``valid_<name>`` in the history), and if the epoch ends with a non-finite loss or weights it
  restores the weights from the start of the epoch, divides the learning rate
  by 10 and runs the epoch again, or raises :class:`TrainingDivergedError`
  naming the epoch once that has failed ``max_lr_reductions`` times.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, PrintLog


class TrainingDivergedError(FloatingPointError):
    """Training produced NaN or infinite losses that lowering the learning rate did not cure."""


class ClipGradNorm(Callback):
    """Clip the global gradient norm to ``max_norm``.

    Unlike skorch's ``GradientNormClipping`` (``clip_grad_norm_``), this skips
    the rescaling pass when the norm is already below the limit, which is most
    batches; on a GPU it always rescales to avoid a host sync per batch.
    """

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def on_grad_computed(self, net, named_parameters, **kwargs):
        params = [p for _, p in named_parameters if p.grad is not None]
        if not params:
            return
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        if total.device.type == "cpu" and total <= self.max_norm:
            return
        torch.nn.utils.clip_grads_with_norm_(params, self.max_norm, total)


class TensorBatches:
    """Mini-batches of a tensor-backed dataset, as skorch's ``iterator_train``/``iterator_valid``.

    Parameters
    ----------
    dataset : skorch Dataset
        Its ``X`` must be a tensor (already on the training device).
    batch_size : int
        Rows per batch; the last batch may be smaller.
    shuffle : bool
        Draw a new permutation (from ``generator``) at every pass.
    generator : torch.Generator, optional
        CPU generator for the permutations; a fixed one makes epochs repeatable.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, generator=None, **_):
        self.X = dataset.X
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.X.device)
            for start in range(0, n, self.batch_size):
                yield self.X[order[start : start + self.batch_size]], None
        else:
            for start in range(0, n, self.batch_size):
                yield self.X[start : start + self.batch_size], None


class LikelihoodNet(NeuralNet):
    """A skorch net trained on ``module.loss(module(X), X)``.

    Extra parameters (besides :class:`skorch.NeuralNet`'s):

    max_lr_reductions : int
        How many times a diverged epoch may be rerun with a 10x lower learning
        rate before :class:`TrainingDivergedError` is raised.
    owner : str
        Name of the estimator, used in warnings and errors.
    """

    def __init__(self, *args, max_lr_reductions: int = 4, owner: str = "estimator", **kwargs):
        super().__init__(*args, **kwargs)
        self.max_lr_reductions = max_lr_reductions
        self.owner = owner

    @property
    def _default_callbacks(self):
        # Losses are recorded per epoch by run_single_epoch, so skorch's
        # per-batch PassthroughScoring callbacks are not needed.
        return [("epoch_timer", EpochTimer()), ("print_log", PrintLog())]

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.module_.loss(y_pred, X)

    def _snapshot(self) -> tuple[dict, dict]:
        return copy.deepcopy(self.module_.state_dict()), copy.deepcopy(self.optimizer_.state_dict())

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.module_.parameters())

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        snapshot = self._snapshot() if training else None
        for attempt in range(self.max_lr_reductions + 1):
            totals: dict[str, torch.Tensor] = {}
            count, batch_count = 0, 0
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                n = len(batch[0])
                terms = {"loss": step["loss"], **getattr(self.module_, "loss_terms", {})}
                for name, value in terms.items():
                    weighted = value.detach() * n
                    totals[name] = totals[name] + weighted if name in totals else weighted
                count += n
                batch_count += 1
                self.notify("on_batch_end", batch=batch, training=training, **step)
            loss = totals["loss"].item() / count
            if not training or (math.isfinite(loss) and self._weights_finite()):
                break
            self._recover(snapshot, attempt)
        for name, total in totals.items():
            self.history.record(f"{prefix}_{name}", loss if name == "loss" else total.item() / count)
        self.history.record(prefix + "_batch_count", batch_count)

    def _recover(self, snapshot: tuple[dict, dict], attempt: int) -> None:
        epoch = len(self.history)
        lr = self.optimizer_.param_groups[0]["lr"]
        if attempt == self.max_lr_reductions:
            raise TrainingDivergedError(
                f"{self.owner}: the training loss became NaN or infinite at epoch {epoch}, and "
                f"{self.max_lr_reductions} restarts of that epoch with a 10x lower learning rate "
                f"(down to {lr:.1e}) did not help. Remedies: standardize X (e.g. StandardScaler), "
                "lower learning_rate, set max_grad_norm, or choose a simpler distribution."
            )
        module_state, optimizer_state = snapshot
        self.module_.load_state_dict(module_state)
        self.optimizer_.load_state_dict(optimizer_state)
        for group in self.optimizer_.param_groups:
            group["lr"] = lr / 10
        warnings.warn(
            f"{self.owner}: the training loss became NaN or infinite at epoch {epoch}; restored "
            f"the weights from the start of that epoch and lowered the learning rate to {lr / 10:.1e}.",
            RuntimeWarning,
            stacklevel=2,
        )
        self.history.record("lr_reduced_to", lr / 10)
