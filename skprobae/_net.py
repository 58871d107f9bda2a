"""The skorch pieces every estimator trains with.

``LikelihoodNet`` is a :class:`skorch.NeuralNet` whose loss is computed from
``X`` by the module itself (``module.loss(output, X)``); skorch's ``y`` slot
of a batch carries the rows' ``sample_weight`` (or None). What it adds to skorch:

* batches come from :class:`~skprobae._engine.RowBatches` (host or device
  rows, no per-row ``Dataset.__getitem__`` and ``collate``);
* :meth:`LikelihoodNet.run_single_epoch` sums the loss on the device and
  syncs once per epoch (a module may also expose a ``loss_terms`` dict of
  scalar tensors, set by its ``loss``; their epoch means are recorded as
  ``train_<name>`` / ``valid_<name>``); if an epoch ends with a non-finite
  loss or weights it restores the weights from the start of the epoch,
  divides the learning rate by 10 and runs the epoch again, or raises
  :class:`TrainingDivergedError` naming the epoch once that has failed
  ``max_lr_reductions`` times;
* optional mixed precision (``torch.autocast`` in bf16 or fp16, with a
  gradient scaler for fp16);
* :class:`KeepBest`, early stopping that keeps the best weights and says why
  training stopped, and :class:`EpochProgress`, one progress bar per stage.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer
from skorch.hf import AccelerateMixin


class TrainingDivergedError(FloatingPointError):
    """Training produced NaN or infinite losses that lowering the learning rate did not cure.

    A subclass of :class:`FloatingPointError`, so ``except FloatingPointError``
    also catches it. Public as :class:`skprobae.exceptions.TrainingDivergedError`.

    Examples
    --------
    >>> from skprobae.exceptions import TrainingDivergedError
    >>> issubclass(TrainingDivergedError, FloatingPointError)
    True
    >>> try:
    ...     raise TrainingDivergedError("the loss is NaN")
    ... except FloatingPointError as error:
    ...     print(type(error).__name__, error)
    TrainingDivergedError the loss is NaN
    """


def clone_state(state):
    """A copy of a (nested) state dict whose tensors are cloned: a cheap ``deepcopy`` for snapshots."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return type(state)((key, clone_state(value)) for key, value in state.items())
    if isinstance(state, list):
        return [clone_state(value) for value in state]
    return state


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


class _EarlyStop(KeyboardInterrupt):
    """How :class:`KeepBest` ends skorch's loop (skorch ends it on a KeyboardInterrupt): not a user's interrupt."""


class KeepBest(Callback):
    """Stop after ``patience`` epochs without an improvement of ``monitor`` by ``threshold``; keep the best weights.

    skorch's ``EarlyStopping`` with ``load_best=True`` and an absolute
    threshold, whose snapshots clone tensors instead of deep-copying the
    state dict, and which records ``best_epoch_`` and ``stopped_early_`` for
    the summary of :meth:`LikelihoodNet.stop_summary`.
    """

    def __init__(self, monitor: str, patience: int, threshold: float = 1e-4):
        self.monitor = monitor
        self.patience = patience
        self.threshold = threshold

    def on_train_begin(self, net, **kwargs):
        self.misses_ = 0
        self.best_score_ = math.inf
        self.best_epoch_ = 0
        self.best_weights_ = None
        self.stopped_early_ = False

    def on_epoch_end(self, net, **kwargs):
        score = net.history[-1, self.monitor]
        if score < self.best_score_ - self.threshold:
            self.misses_, self.best_score_ = 0, score
            self.best_epoch_ = net.history[-1, "epoch"]
            self.best_weights_ = clone_state(net.plain_module_.state_dict())
        else:
            self.misses_ += 1
        if self.misses_ == self.patience:
            self.stopped_early_ = True
            raise _EarlyStop  # skorch's way of ending the training loop

    def on_train_end(self, net, **kwargs):
        if self.best_weights_ is not None and (not net.history or self.best_epoch_ != net.history[-1, "epoch"]):
            net.plain_module_.load_state_dict(self.best_weights_)


class EpochProgress(Callback):
    """A progress bar over the epochs of one training stage, labelled, with the last losses."""

    def __init__(self, label: str, max_epochs: int):
        self.label = label
        self.max_epochs = max_epochs

    def on_train_begin(self, net, **kwargs):
        from tqdm import tqdm

        self.bar_ = tqdm(total=self.max_epochs, desc=self.label, unit="epoch", file=sys.stderr, leave=True)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.bar_.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "valid_loss") if k in row}, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
        del self.bar_  # it holds sys.stderr: a fitted estimator must pickle

    def __getstate__(self) -> dict:
        # a stage that raised never reached on_train_end
        return {k: v for k, v in self.__dict__.items() if k != "bar_"}


def _autocast(device: str | torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class LikelihoodNet(NeuralNet):
    """A skorch net trained on ``module.loss(module(X), X)``.

    Extra parameters (besides :class:`skorch.NeuralNet`'s):

    max_lr_reductions : int
        How many times a diverged epoch may be rerun with a 10x lower learning
        rate before :class:`TrainingDivergedError` is raised.
    owner : str
        Name of the estimator, used in warnings and errors.
    stage : str
        Name of the training stage ("autoencoder", "latent flow", ...), used
        in the progress bar and the summary.
    mixed_precision : torch.dtype or None
        Train under ``torch.autocast`` in this dtype (``torch.float16`` adds a
        gradient scaler).
    """

    def __init__(
        self,
        *args,
        max_lr_reductions: int = 4,
        owner: str = "estimator",
        stage: str = "training",
        mixed_precision: torch.dtype | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.max_lr_reductions = max_lr_reductions
        self.owner = owner
        self.stage = stage
        self.mixed_precision = mixed_precision

    @property
    def _default_callbacks(self):
        # Losses are recorded per epoch by run_single_epoch, and PrintLog (which
        # tabulates every epoch even when nothing is printed) is added only on request.
        return [("epoch_timer", EpochTimer())]

    def initialize_optimizer(self, *args, **kwargs):
        super().initialize_optimizer(*args, **kwargs)
        fp16 = self.mixed_precision == torch.float16
        self.scaler_ = torch.amp.GradScaler(torch.device(self.device).type) if fp16 else None
        return self

    def initialize_for_inference(self) -> LikelihoodNet:
        """skorch's ``initialize`` without the optimizer, which :meth:`ensure_optimizer` builds if training resumes.

        Building a torch optimizer imports ``torch._dynamo`` (torch's own
        decorators; about a second per process): a loaded model that only
        scores never pays for it.
        """
        self._initialize_virtual_params()
        self._initialize_callbacks()
        self._initialize_module()
        self._initialize_criterion()
        self._initialize_history()
        self.initialized_ = True
        return self

    def ensure_optimizer(self) -> None:
        """Build the optimizer of a net initialized for inference (a no-op where it exists)."""
        if hasattr(self, "optimizer_"):
            return
        # its first build, not a re-initialization: skorch would print "Re-initializing optimizer" under verbose
        self.initialized_ = False
        try:
            self._initialize_optimizer()
        finally:
            self.initialized_ = True

    @property
    def plain_module_(self) -> torch.nn.Module:
        """The module itself, also while a data-parallel wrapper holds it (its ``loss`` is not on the wrapper)."""
        return self.module_

    def _reduce_totals(self, totals: dict, count: int) -> tuple[dict, int]:
        """The epoch's loss sums over every process of a data-parallel fit (one process: as they are)."""
        return totals, count

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """``module.loss(y_pred, X)``; ``y_true`` is the batch's per-row weights (``sample_weight``) or None."""
        if y_true is None:
            return self.plain_module_.loss(y_pred, X)
        return self.plain_module_.loss(y_pred, X, weight=y_true)

    def fit_loop(self, *args, **kwargs):
        """skorch's loop; a user's KeyboardInterrupt is recorded in ``interrupted_epoch_`` (skorch swallows it).

        The row of the epoch in progress (no ``dur`` yet: it did not finish)
        is dropped from the history, so every row of it is a whole epoch.
        """
        self.interrupted_epoch_ = None
        self.ensure_optimizer()
        try:
            return super().fit_loop(*args, **kwargs)
        except _EarlyStop:
            raise
        except KeyboardInterrupt:
            self.interrupted_epoch_ = len(self.history)
            if self.history and "dur" not in self.history[-1]:
                self.history.pop()
            raise

    def _set_training(self, training=True):
        # Switching modes walks every submodule (a zuko flow has hundreds): do it only on a change.
        if self.module_.training != training:
            super()._set_training(training)

    def initialize_module(self, *args, **kwargs):
        super().initialize_module(*args, **kwargs)
        self._learnable = None
        return self

    def _learnable_params(self) -> list:
        """``get_all_learnable_params()``, listed once per fit (it walks the modules)."""
        if getattr(self, "_learnable", None) is None:
            self._learnable = list(self.get_all_learnable_params())
        return self._learnable

    def train_step(self, batch, **fit_params):
        """One optimizer step: forward and loss (under autocast), backward (scaled for fp16), callbacks, step."""
        self._zero_grad_optimizer(set_to_none=True)
        self._set_training(True)
        Xi, weight = batch
        with _autocast(self.device, self.mixed_precision):
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, weight, X=Xi, training=True)
        if self.scaler_ is not None:
            self.scaler_.scale(loss).backward()
            self.scaler_.unscale_(self.optimizer_)
        else:
            loss.backward()
        self.notify("on_grad_computed", named_parameters=self._learnable_params(), batch=batch, training=True)
        if self.scaler_ is not None:
            self.scaler_.step(self.optimizer_)
            self.scaler_.update()
        else:
            self.optimizer_.step()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, weight = batch
        with torch.no_grad(), _autocast(self.device, self.mixed_precision):
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, weight, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def _snapshot(self) -> tuple[dict, dict]:
        return clone_state(self.module_.state_dict()), clone_state(self.optimizer_.state_dict())

    def _weights_finite(self) -> bool:
        params = [p for _, p in self._learnable_params()]
        return bool(torch.isfinite(torch.nn.utils.get_total_norm(params))) if params else True

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
                terms = {"loss": step["loss"], **getattr(self.plain_module_, "loss_terms", {})}
                for name, value in terms.items():
                    weighted = value.detach().float() * n
                    totals[name] = totals[name] + weighted if name in totals else weighted
                count += n
                batch_count += 1
                self.notify("on_batch_end", batch=batch, training=training, **step)
            totals, count = self._reduce_totals(totals, count)
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

    def stop_summary(self) -> str:
        """One line: where training of this stage stopped, why, and which epoch's weights were kept."""
        epochs = len(self.history)
        keep = dict(self.callbacks_).get("keep_best")
        interrupted = getattr(self, "interrupted_epoch_", None)
        if interrupted is not None:
            why = f"interrupted (KeyboardInterrupt) in epoch {interrupted} of {self.max_epochs}"
        elif keep is not None and keep.stopped_early_:
            why = f"stopped at epoch {epochs}: {keep.monitor} did not improve by {keep.threshold:g} for {keep.patience}"
            why += " epochs"
        else:
            why = f"ran all {epochs} epochs"
        if keep is not None and keep.best_epoch_:
            kept = f"kept epoch {keep.best_epoch_} ({keep.monitor} {keep.best_score_:.6g})"
        elif not epochs:
            kept = "kept the weights of the unfinished first epoch"
        else:
            monitor = "valid_loss" if "valid_loss" in self.history[-1] else "train_loss"
            kept = f"kept the last epoch ({monitor} {self.history[-1, monitor]:.6g})"
        return f"{self.owner} {self.stage}: {why}; {kept}."


class AcceleratedLikelihoodNet(AccelerateMixin, LikelihoodNet):
    """A :class:`LikelihoodNet` trained data-parallel through skorch's ``AccelerateMixin`` (Hugging Face accelerate).

    Every process reads its share of each global batch
    (:class:`~skprobae._engine.RowBatches` with ``rank`` / ``world``);
    gradients are averaged by the accelerator's wrapper (DDP), and the
    epoch's loss sums are reduced over the processes, so that every process
    records the same history and takes the same early-stopping decision. The
    loss is computed by the unwrapped module (the wrapper hides its ``loss``).
    After training, :meth:`detach` turns the net back into a plain
    :class:`LikelihoodNet` that pickles and loads without accelerate.
    """

    @property
    def plain_module_(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.module_)

    def initialize_criterion(self, *args, **kwargs):
        # The loss comes from the module; a parameter-free criterion module would make accelerate wrap it in
        # DDP, which refuses modules without parameters.
        super().initialize_criterion(*args, **kwargs)
        self.criterion_ = _unused_criterion
        return self

    def _reduce_totals(self, totals: dict, count: int) -> tuple[dict, int]:
        if self.accelerator.num_processes == 1:
            return totals, count
        names = sorted(totals)
        packed = torch.stack([totals[name].float() for name in names] + [torch.tensor(float(count))]).to(
            self.accelerator.device
        )
        packed = self.accelerator.reduce(packed, reduction="sum").cpu()
        return {name: packed[i] for i, name in enumerate(names)}, int(packed[-1].item())

    def train_step(self, batch, **fit_params):
        """One step under the accelerator: forward on the wrapper, loss, ``accelerator.backward``, clip, step."""
        with self.accelerator.accumulate(self.module_):
            self._zero_grad_optimizer(set_to_none=True)
            self._set_training(True)
            Xi, weight = batch
            with self.accelerator.autocast():
                y_pred = self.infer(Xi, **fit_params)
                loss = self.get_loss(y_pred, weight, X=Xi, training=True)
            self.accelerator.backward(loss)
            self.notify("on_grad_computed", named_parameters=self._learnable_params(), batch=batch, training=True)
            self.optimizer_.step()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, weight = batch
        with torch.no_grad(), self.accelerator.autocast():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, weight, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def detach(self) -> LikelihoodNet:
        """This net as a plain :class:`LikelihoodNet`: modules unwrapped, optimizer unwrapped, no accelerator."""
        self._unwrap_accelerator()
        optimizer = getattr(self.optimizer_, "optimizer", self.optimizer_)  # accelerate's AcceleratedOptimizer
        for name in ("accelerator", "unwrap_after_train", "_wrapped_with_accelerator"):
            vars(self).pop(name, None)
        self.__class__ = LikelihoodNet
        self.optimizer_ = optimizer
        self.criterion_ = torch.nn.Identity()
        return self


def _unused_criterion(*args, **kwargs):
    raise RuntimeError("LikelihoodNet takes its loss from the module, not from a criterion.")
